"""Boot to agent ready: KvmEngine vs `qemu-system-x86_64 -accel kvm`, both on a real kvm_amd
inside the nested test bed's L1 (QEMU TCG, docs/kvm-engine.md).

Same kernel (bzImage), same initramfs (the agent, no scheduler), same vCPUs and memory,
the same wire (COM2) and command line; each engine boots REPS times, alternating, and
the time is engine start -> the agent's SysRdy frame on the wire. Prints the medians and
their ratio (qemu / kvm: above 1 means our engine is faster).

    python benchmarks/bench_nested_kvm.py            # on the host: boots L1, measures inside
    python benchmarks/bench_nested_kvm.py --inside   # what L1 runs
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPS = 5
TOPOLOGY = "1n1l1c1t"
MEMORY_MIB = 256
BOOT_CAP_S = 180.0
GIVE_UP_AFTER = 2  # an engine whose first two boots fail is not tried again
# L1's KVM cannot give L2 XSAVE (TCG's SVM, docs/kvm-engine.md); our engine hides it by
# itself, QEMU is told to.
QEMU_CPU = "host,-xsave,-xsaveopt,-xsavec,-xsaves,-avx,-avx2,-pku"


def boot_to_ready(engine, boot) -> float | str:
    """Seconds from engine.start to SysRdy, or why it did not get there."""
    from ktstr_vmm.guest.wire import Decoder, MsgType

    t0 = time.monotonic()
    m = engine.start(boot)
    dec = Decoder()
    try:
        while time.monotonic() - t0 < BOOT_CAP_S:
            data = m.read_wire(0.05)
            if data is None:
                return f"stopped before ready: {m.exit_reason()}"
            for frame in dec.feed(data or b""):
                if frame.type == MsgType.SysRdy:
                    return time.monotonic() - t0
        return f"no agent within {BOOT_CAP_S:.0f} s"
    finally:
        m.kill()
        m.close()


def inside() -> int:
    from ktstr_vmm.engine.base import BootSpec
    from ktstr_vmm.engine.kvm import KvmEngine
    from ktstr_vmm.engine.qemu import QemuEngine
    from ktstr_vmm.run.runner import CMDLINE, prepare
    from ktstr_vmm.spec import RunSpec, parse_topology

    topo = parse_topology(TOPOLOGY)
    prep = prepare(RunSpec(scheduler="none", topology=topo, duration_s=1.0, name="bench"))
    engines = {"kvm": KvmEngine(), "qemu-kvm": QemuEngine(accel="kvm", wire="serial")}
    times: dict[str, list] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for i in range(REPS):
            for name, engine in engines.items():
                if len(times[name]) >= GIVE_UP_AFTER and all(
                        isinstance(t, str) for t in times[name]):
                    continue
                d = Path(tmp) / f"{name}-{i}"
                boot = BootSpec(kernel=prep.kernel.bzimage, initramfs=prep.initramfs,
                                cmdline=CMDLINE, topology=topo, memory_mib=MEMORY_MIB,
                                console_path=d / "console.log", workdir=d / "work",
                                extra={"wire": "serial", "kvm.boot": "bzimage",
                                       "cpu": QEMU_CPU})
                d.mkdir(parents=True)
                t = boot_to_ready(engine, boot)
                times[name].append(t)
                sys.stdout.write(f"bench: {name} #{i + 1}: "
                                 f"{t if isinstance(t, str) else f'{t:.2f} s'}\n")
                sys.stdout.flush()
    print("BENCH-JSON " + json.dumps(times))
    return 0


def report(times: dict[str, list]) -> None:
    meds = {}
    for name, ts in times.items():
        ok = [t for t in ts if isinstance(t, float)]
        meds[name] = statistics.median(ok) if len(ok) == len(ts) and ok else None
        fails = [t for t in ts if isinstance(t, str)]
        head = (f"median {meds[name]:.2f} s" if meds[name] is not None
                else f"{len(fails)}/{len(ts)} boots failed: {fails[0] if fails else '-'}")
        each = ", ".join(f"{t:.2f}" if isinstance(t, float) else "x" for t in ts)
        print(f"{name:>9}: {head}  ({each})")
    if meds.get("kvm") and meds.get("qemu-kvm"):
        print(f"ratio qemu-kvm / KvmEngine, boot to agent ready: "
              f"{meds['qemu-kvm'] / meds['kvm']:.2f}x")
    else:
        print("ratio: not measurable (see the failures above)")


def host() -> int:
    from ktstr_vmm.kernel.fetch import fetch_kernel
    from ktstr_vmm.nested.bed import run_bed
    from ktstr_vmm.progress import LineProgress

    out = Path(tempfile.mkdtemp(prefix="ktstr-bench-nested-"))
    res = run_bed([], out, kernel=fetch_kernel(), timeout_s=3600,
                  bench=[[str(Path(__file__).resolve()), "--inside"]],
                  progress=LineProgress(sys.stderr))
    text = "".join(p.read_text() for p in sorted(out.glob("bench-*.txt")))
    line = next((x for x in text.splitlines() if x.startswith("BENCH-JSON ")), None)
    print(f"L1 wall {res.timings.get('l1_wall_s')} s; results in {out}")
    if line is None:
        print("the benchmark inside L1 printed no result:\n" + text[-2000:])
        return 1
    report(json.loads(line[len("BENCH-JSON "):]))
    return 0


if __name__ == "__main__":
    sys.exit(inside() if "--inside" in sys.argv[1:] else host())
