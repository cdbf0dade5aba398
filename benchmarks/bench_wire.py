"""Wire throughput: how fast the guest agent's frames cross COM2 into the host.

Boots the cached sched_ext kernel with the real agent and a guest spec that asks for
`wire_selftest_kib` KiB of RawPayloadOutput filler (4 KiB frames) right after SysRdy, and
times the host side from the first filler frame to the last one (QemuEngine's wire socket,
the product's Decoder). Prints MB/s, the agent's own send time, and the host's load average
(under TCG the guest competes with everything else on the machine).

    .venv/bin/python benchmarks/bench_wire.py [--kib 2048] [--reps 2] [--wire serial|virtio|both] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ktstr_vmm.engine.base import BootSpec  # noqa: E402
from ktstr_vmm.engine.qemu import QemuEngine  # noqa: E402
from ktstr_vmm.guest import messages as gm  # noqa: E402
from ktstr_vmm.guest.agent import build_agent  # noqa: E402
from ktstr_vmm.guest.initramfs import build_initramfs  # noqa: E402
from ktstr_vmm.guest.spec import render_guest_spec  # noqa: E402
from ktstr_vmm.guest.wire import Decoder, MsgType  # noqa: E402
from ktstr_vmm.kernel.kernels import resolve_kernel  # noqa: E402
from ktstr_vmm.spec import RunSpec, parse_topology  # noqa: E402

CMDLINE = "console=ttyS0 panic=-1 nokaslr 8250.nr_uarts=2"
TIMEOUT = 600


def one(kernel, kib: int, workdir: Path, wire: str) -> dict:
    spec = RunSpec(name="bench_wire", scheduler="", topology=parse_topology("tiny-2llc"),
                   duration_s=0.1, trace=False)
    text = render_guest_spec(spec, None, [], wire_selftest_kib=kib)
    initrd = build_initramfs(build_agent(), text, {}, workdir / "initrd.cpio.gz")
    (workdir / "vm").mkdir()
    boot = BootSpec(kernel=kernel.bzimage, initramfs=initrd, cmdline=CMDLINE,
                    topology=spec.topology, memory_mib=spec.memory,
                    console_path=workdir / "console.log", workdir=workdir / "vm")
    d = Decoder()
    first = last = None
    got = 0
    agent_note = ""
    t0 = time.monotonic()
    m = QemuEngine(wire=wire).start(boot)
    try:
        while time.monotonic() - t0 < TIMEOUT:
            data = m.read_wire(0.1)
            for f in d.feed(data or b""):
                if f.type == MsgType.RawPayloadOutput:
                    first = first or time.monotonic()
                    last = time.monotonic()
                    got += len(f.payload)
                p = gm.parse_payload(f)
                if isinstance(p, gm.Text) and p.text.startswith("wire selftest"):
                    agent_note = p.text
            if data is None or (not data and m.wait(0) is not None):
                break
    finally:
        m.close()
    if got != kib * 1024 or first is None or last is None:
        raise SystemExit(f"bench_wire: got {got} of {kib * 1024} filler bytes; see "
                         f"{workdir / 'console.log'}")
    return {"wire": wire, "kib": kib, "seconds": last - first, "mb_per_s": got / 1e6 / (last - first),
            "agent": agent_note, "decoder": d.stats(), "loadavg": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kib", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--wire", choices=("serial", "virtio", "both"), default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    kernel = resolve_kernel(None)
    wires = ("serial", "virtio") if args.wire == "both" else (args.wire,)
    runs = []
    for _ in range(args.reps):
        for wire in wires:  # alternate, so a change in host load hits both alike
            with tempfile.TemporaryDirectory(prefix="bench-wire-") as d:
                runs.append(one(kernel, args.kib, Path(d), wire))
    summary = {w: statistics.median(r["mb_per_s"] for r in runs if r["wire"] == w) for w in wires}
    if args.json:
        print(json.dumps({"median_mb_per_s": summary, "runs": runs}, indent=2))
    else:
        for r in runs:
            print(f"{r['wire']:6} {r['kib']} KiB in {r['seconds']:.2f}s = {r['mb_per_s']:.3f} MB/s "
                  f"(agent: {r['agent']}; load {r['loadavg']:.1f})")
        for w, v in summary.items():
            print(f"median {v:.3f} MB/s over the {w} wire (QEMU TCG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
