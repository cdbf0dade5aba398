"""Boot to power-off: QemuEngine against plain qemu-system-x86_64, side by side.

Both boot the cached sched_ext kernel (`ktstr kernel fetch`) with the same initramfs,
whose /init (native/testguests/poweroff-init.c, static) prints one line and powers off
at once, on the same vCPU topology, memory and accelerator. Plain QEMU gets the
minimal command line (`-serial file:`); QemuEngine adds what a run needs (shared-memory
RAM backend, QMP, the wire, console chardev, process-group handling) and is timed from
start() to close() returning. Repetitions alternate the order (ABBA) so a drift in host
load hits both sides alike. Goal: median ratio <= 1.05.

    .venv/bin/python benchmarks/bench_boot.py [--reps 5] [--topology tiny-2llc] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ktstr_vmm.engine.base import BootSpec  # noqa: E402
from ktstr_vmm.engine.qemu import QemuEngine  # noqa: E402
from ktstr_vmm.guest.initramfs import build_initramfs  # noqa: E402
from ktstr_vmm.kernel.kernels import resolve_kernel  # noqa: E402
from ktstr_vmm.spec import parse_topology  # noqa: E402

CMDLINE = "console=ttyS0 panic=-1 nokaslr"
TIMEOUT = 300


def build_guest(work: Path) -> Path:
    init = work / "poweroff-init"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(init),
                    str(REPO / "native/testguests/poweroff-init.c")], check=True, timeout=120)
    return build_initramfs(init, "", {})


def plain(qemu: str, bzimage: Path, initrd: Path, topo, memory: int, console: Path) -> tuple[float, float]:
    cmd = [qemu, "-machine", "pc", "-no-user-config", "-nodefaults", "-display", "none",
           "-no-reboot", "-accel", "tcg,thread=single", "-cpu", "max,vendor=GenuineIntel",
           "-smp", (f"cpus={topo.vcpus},sockets={topo.nodes},dies={topo.llcs_per_node},"
                    f"cores={topo.cores},threads={topo.threads}"),
           "-m", f"{memory}M", "-serial", f"file:{console}",
           "-kernel", str(bzimage), "-initrd", str(initrd), "-append", CMDLINE]
    t0, c0 = time.perf_counter(), _child_cpu()
    try:
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True,
                       timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"plain QEMU did not power off within {TIMEOUT}s; console tail:\n"
                         + _tail(console)) from None
    took = time.perf_counter() - t0, _child_cpu() - c0
    _check(console)
    return took


def engine(bzimage: Path, initrd: Path, topo, memory: int, console: Path, work: Path,
           wire: str) -> tuple[float, float]:
    spec = BootSpec(kernel=bzimage, initramfs=initrd, cmdline=CMDLINE, topology=topo,
                    memory_mib=memory, console_path=console, workdir=work)
    t0, c0 = time.perf_counter(), _child_cpu()
    m = QemuEngine(wire=wire).start(spec)
    try:
        rc = m.wait(TIMEOUT)
    finally:
        m.close()
    took = time.perf_counter() - t0, _child_cpu() - c0
    if rc != 0 or m.exit_reason() != "poweroff":
        raise SystemExit(f"engine boot ended with {rc} ({m.exit_reason()}); console tail:\n"
                         + _tail(console))
    _check(console)
    return took


def _child_cpu() -> float:
    """CPU seconds (user + system) of reaped children: QEMU's own work, which host load
    does not inflate the way it inflates wall time."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _tail(console: Path, lines: int = 25) -> str:
    try:
        return "\n".join(console.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console output)"


def _check(console: Path) -> None:
    text = console.read_text(errors="replace")
    if "KT init mode=poweroff" not in text or "reboot: Power down" not in text:
        raise SystemExit("the guest did not reach init and power off; console tail:\n"
                         + _tail(console))
    console.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="boots per side (default 5)")
    ap.add_argument("--topology", default="tiny-2llc")
    ap.add_argument("--memory", type=int, default=256, help="MiB (default 256)")
    ap.add_argument("--wire", choices=("serial", "virtio"), default="serial",
                    help="QemuEngine's wire transport (default serial)")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = ap.parse_args()
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        print("bench_boot: qemu-system-x86_64 not found", file=sys.stderr)
        return 1
    kernel = resolve_kernel(None)
    topo = parse_topology(args.topology)
    with tempfile.TemporaryDirectory(prefix="ktstr-bench-boot-") as tmp:
        work = Path(tmp)
        initrd = build_guest(work)
        wall: dict[str, list[float]] = {"plain": [], "engine": []}
        cpu: dict[str, list[float]] = {"plain": [], "engine": []}
        for i in range(args.reps):
            order = ("plain", "engine") if i % 2 == 0 else ("engine", "plain")
            for side in order:
                console = work / f"console-{side}-{i}.log"
                if side == "plain":
                    w, c = plain(qemu, kernel.bzimage, initrd, topo, args.memory, console)
                else:
                    w, c = engine(kernel.bzimage, initrd, topo, args.memory, console, work / "vm",
                                  args.wire)
                wall[side].append(round(w, 3))
                cpu[side].append(round(c, 3))
                if not args.json:
                    print(f"  rep {i + 1} {side:6s} wall {w:6.2f}s  qemu cpu {c:6.2f}s", flush=True)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratio = med["engine"] / med["plain"]
    ratio_cpu = med_cpu["engine"] / med_cpu["plain"]
    result = {"kernel": kernel.version, "topology": topo.notation, "memory_mib": args.memory,
              "wire": args.wire,
              "reps": args.reps, "wall_s": wall, "cpu_s": cpu, "median_wall_s": med,
              "median_cpu_s": med_cpu, "ratio_wall": round(ratio, 3),
              "ratio_cpu": round(ratio_cpu, 3), "goal": 1.05,
              "loadavg_1m": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"boot to power-off, {topo.notation}, {args.memory} MiB, TCG, wire {args.wire}, "
              f"kernel {kernel.version}, load average {os.getloadavg()[0]:.1f}")
        for side, label in (("plain", "plain qemu"), ("engine", "QemuEngine")):
            print(f"  {label:11s} median wall {med[side]:6.2f}s (min {min(wall[side]):.2f}s)  "
                  f"median qemu cpu {med_cpu[side]:6.2f}s")
        print(f"  ratio wall {ratio:.3f}x, cpu {ratio_cpu:.3f}x (goal <= 1.05x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
