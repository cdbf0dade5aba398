"""KvmEngine against `qemu-system-x86_64 -accel kvm`, start to a synthetic guest's first exit.

Both run the same 64 KiB payload (native/testguests/exit.s: its first instructions write
42 to port 0xf4), from the x86 reset vector, 16 MiB of RAM, one vCPU:
- KvmEngine: timed from just before `start_firmware()` to the CLOCK_MONOTONIC stamp the
  vCPU thread put on the exit-port event (VM creation, memfd RAM, vCPU, CPUID, thread
  start and the guest's run all inside), and separately to `close()` returning.
- QEMU: `-accel kvm -bios exit.bin -device isa-debug-exit,iobase=0xf4`, timed from
  Popen to the process's exit (status 85 = 42 << 1 | 1); QEMU's own start-up included,
  as a user would pay it.
Repetitions alternate the order (ABBA). Goal: median ratio >= 20.

With --smoke it also times the Linux early-boot smoke (the cached kernel's vmlinux
through PVH on this host's KVM) to its first console line and to the CPU topology lines.

    .venv/bin/python benchmarks/bench_kvm.py [--reps 20] [--smoke] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # support.testguests

from support.testguests import build_guest  # noqa: E402

from ktstr_vmm.engine.base import BootSpec  # noqa: E402
from ktstr_vmm.engine.kvm import KvmEngine  # noqa: E402
from ktstr_vmm.engine.kvmprobe import probe_kvm  # noqa: E402
from ktstr_vmm.spec import parse_topology  # noqa: E402

ONE = parse_topology("1n1l1c1t")
QEMU_CPU = "host,-arch-capabilities"  # MSR 0x10a fails on PVM otherwise (ENVIRONMENT.md)


def kvm_once(engine: KvmEngine, image: bytes) -> tuple[float, float]:
    t0 = time.monotonic_ns()
    m = engine.start_firmware(image, ONE)
    status = m.wait(10)
    ev = m.stop_event()
    m.close()
    t1 = time.monotonic_ns()
    if status != 42 or ev is None:
        raise SystemExit(f"KvmEngine: expected exit code 42, got {status} ({m.exit_reason()})")
    return (ev.ns - t0) / 1e6, (t1 - t0) / 1e6


def qemu_once(bios: Path) -> float:
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", QEMU_CPU, "-M", "pc", "-m", "16",
            "-smp", "1", "-bios", str(bios), "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-display", "none", "-nodefaults", "-no-user-config", "-serial", "none",
            "-monitor", "none"]
    t0 = time.monotonic_ns()
    r = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    t1 = time.monotonic_ns()
    if r.returncode != 85:
        raise SystemExit(f"qemu: expected status 85, got {r.returncode}: {r.stderr[-300:]!r}")
    return (t1 - t0) / 1e6


def smoke(topology: str, cap: float) -> dict:
    from ktstr_vmm.kernel.fetch import fetch_kernel

    k = fetch_kernel()
    topo = parse_topology(topology)
    with tempfile.TemporaryDirectory(prefix="ktstr-bench-kvm-") as tmp:
        con = Path(tmp) / "console.log"
        boot = BootSpec(kernel=k.vmlinux, initramfs=Path(tmp) / "none",
                        cmdline="earlyprintk=serial,ttyS0,115200 console=ttyS0 nokaslr panic=-1",
                        topology=topo, memory_mib=512, console_path=con, workdir=Path(tmp) / "w")
        t0 = time.monotonic()
        first = topo_at = None
        with KvmEngine().start(boot) as m:
            while time.monotonic() - t0 < cap and m.wait(0.25) is None:
                text = con.read_text(errors="replace")
                if first is None and "Linux version" in text:
                    first = time.monotonic() - t0
                if re.search(r"CPU topo: Allowing \d+ present CPUs", text):
                    topo_at = time.monotonic() - t0
                    break
    def r(x):
        return None if x is None else round(x, 1)

    return {"topology": topology, "first_console_line_s": r(first), "cpu_topology_lines_s": r(topo_at),
            "cap_s": cap, "loadavg_1m": os.getloadavg()[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--smoke", action="store_true", help="also time the Linux early-boot smoke")
    ap.add_argument("--smoke-cap", type=float, default=600.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    probe = probe_kvm()
    if probe.kind == "absent":
        print(f"bench_kvm: skipped: {probe.detail}")
        return 0
    bios = build_guest("exit")
    image = bios.read_bytes()
    engine = KvmEngine()
    kvm_once(engine, image)  # warm: page cache, first-use allocations
    qemu_once(bios)
    kvm_exit, kvm_close, qemu = [], [], []
    for i in range(args.reps):
        order = (0, 1) if i % 4 in (0, 3) else (1, 0)
        for which in order:
            if which == 0:
                e, c = kvm_once(engine, image)
                kvm_exit.append(e)
                kvm_close.append(c)
            else:
                qemu.append(qemu_once(bios))
    med = statistics.median
    out = {
        "kvm_probe": probe.kind,
        "reps": args.reps,
        "kvm_engine_start_to_first_exit_ms": {"median": round(med(kvm_exit), 3),
                                              "min": round(min(kvm_exit), 3)},
        "kvm_engine_start_to_closed_ms": {"median": round(med(kvm_close), 3)},
        "samples_ms": {"kvm": [round(x, 3) for x in kvm_exit], "qemu": [round(x, 1) for x in qemu]},
        "qemu_accel_kvm_start_to_exit_ms": {"median": round(med(qemu), 3),
                                            "min": round(min(qemu), 3)},
        "ratio_median": round(med(qemu) / med(kvm_exit), 1),
        "loadavg_1m": os.getloadavg()[0],
    }
    if args.smoke:
        out["smoke"] = smoke("2n2l2c1t", args.smoke_cap)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"KVM probe: {probe.kind} ({probe.detail})")
    print(f"start -> first exit, median of {args.reps} (ms):")
    print(f"  KvmEngine             {med(kvm_exit):8.2f}   (min {min(kvm_exit):.2f}; "
          f"to close(): {med(kvm_close):.2f})")
    print(f"  qemu -accel kvm       {med(qemu):8.2f}   (min {min(qemu):.2f})")
    print(f"  ratio                 {out['ratio_median']:8.1f}x  (goal >= 20x)")
    if args.smoke:
        s = out["smoke"]
        print(f"Linux early-boot smoke ({s['topology']}, load {s['loadavg_1m']:.1f}): first console "
              f"line {s['first_console_line_s']} s, CPU topology lines {s['cpu_topology_lines_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
