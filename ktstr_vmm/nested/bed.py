"""Boot L1 under QEMU TCG with a real kvm_amd and run a batch of `ktstr run --engine kvm`
inside it; bring the run directories back.

  host: fetch modules, build the agent and L1's root image (image.py), write the batch at
        the start of a sparse exchange disk, start
        qemu-system-x86_64 -accel tcg,thread=single -cpu max -smp 2 -m <L1 MiB>
          -kernel <bzImage> -append "root=/dev/vda ro init=/init ..."
          -drive <root image, read-only> -drive <exchange disk>
        with L1's console in <out>/l1-console.log, relaying its "ktstr-nested:" lines
  L1:   init loads irqbypass/kvm/kvm-amd, runs inside.py (the product's CLI per run),
        writes one tar over the exchange disk, powers off
  host: reads the exchange disk as a tar (no loop mount) into <out>/: nested.json,
        doctor.txt, dmesg.txt, runs/<run-id>/...

Bad input is a one-line error before anything starts (no QEMU, no modules package, L1
memory more than this host has free); an L1 that does not finish in time is killed by the
watchdog and nothing is left but the console log.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EngineError, KtstrError, UsageError
from ..guest.agent import build_agent
from ..introspect.symbols import kernel_symbols
from ..kernel.kernels import Kernel
from ..progress import Progress
from .image import boot_initramfs, build_image
from .inside import BATCH_MAGIC, BATCH_MAX, RESULTS
from .modules import fetch_modules
from .stall import SymbolMap, diagnose, poke

QEMU = "qemu-system-x86_64"
L1_MEMORY_MIB = 2048
# One vCPU: with two, QEMU's round-robin TCG kicks the vCPU thread every 100 ms, and a kick
# that lands while L2 runs after an injected interrupt makes TCG deliver that interrupt a
# second time whatever L2's IF says (helper_vmrun leaves cs->exception_index set): L2 then
# deadlocks in hrtimer_interrupt inside hrtimer_interrupt. Measured: 2 vCPUs, every L2
# boot hung (UP and SMP); 1 vCPU, every one-vCPU L2 run passed. More L1 vCPUs run under
# multi-threaded TCG (no round-robin kicks), which L2 runs with several vCPUs need: on one
# L1 vCPU they stopped L1 altogether in 2 of 4 tries (docs/kvm-engine.md).
L1_VCPUS = 1


def tcg_mode(vcpus: int) -> str:
    return "single" if vcpus == 1 else "multi"
EXCHANGE_MIB = 1024
# idle=poll: L1 never halts. Twice, under host load, L1 halted and was never woken again
# (QEMU's CPU time stopped growing, no heartbeat from L1's init for minutes).
L1_CMDLINE = ("console=ttyS0 panic=-1 nokaslr idle=poll "
              "quiet 8250.nr_uarts=1 transparent_hugepage=madvise")
KVM_AMD_PARAMS = ""  # kvm-amd module parameters in L1, comma-separated ("vgif=0")
# QEMU TCG can drop L1's pending timer interrupt, and L1 then sleeps until some other
# interrupt comes (stall.py): the bed presses a key on L1's keyboard every POKE_S, so such
# a stall lasts at most that long. Waking L1 only after a missed heartbeat (every 30 s,
# image.py) was measured too late: a 45 s stall of L1 is a 45 s jump of L2's clock, and
# sched_ext's watchdog in L2 then failed scx_simple with "runnable task stall". After
# STALL_S without a console line L1 is stalled for good: the bed samples where it is, says
# so and stops it.
POKE_S = 2.0
STALL_S = 300.0
UPTIME_RE = re.compile(r"ktstr-nested: (init at|kvm modules loaded at) ([0-9.]+) s")


@dataclass(frozen=True)
class NestedRun:
    """One `ktstr run` inside L1: `args` are run options (without --json). With
    `command="shell"` it is `ktstr shell ARGS` instead, `stdin` its piped script; what it
    printed comes back as the run's "stdout"."""

    label: str
    args: tuple[str, ...]
    control: bool = False  # pause, resume, snapshot, stop through control.sock once running
    env: tuple[tuple[str, str], ...] = ()  # extra environment for this run
    command: str = "run"  # "run" or "shell"
    stdin: str = ""


@dataclass(frozen=True)
class BedResult:
    out_dir: Path
    report: dict[str, Any]           # nested.json
    timings: dict[str, float]        # host-side seconds
    console: Path                    # L1's console log
    runs: dict[str, Path] = field(default_factory=dict)  # label -> run directory

    def run(self, label: str) -> dict[str, Any]:
        return next(r for r in self.report["runs"] if r.get("label") == label)


def host_free_mib() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 1 << 30


def check_host(memory_mib: int) -> str:
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise EngineError(f"{QEMU} not found: the nested test bed runs L1 under QEMU TCG",
                          "apt-get install qemu-system-x86")
    free = host_free_mib()
    if memory_mib > free:
        raise UsageError(f"L1 needs {memory_mib} MiB and this host has {free} MiB available",
                         "free some memory or pass a smaller --l1-memory")
    return qemu


def _write_batch(path: Path, runs: list[NestedRun], bench: list[list[str]]) -> None:
    body = json.dumps({"runs": [{"label": r.label, "args": list(r.args), "control": r.control,
                                 "env": dict(r.env), "command": r.command, "stdin": r.stdin}
                                for r in runs], "bench": bench}).encode()
    if len(BATCH_MAGIC) + len(body) + 1 > BATCH_MAX:
        raise UsageError("the nested batch is too large", "run fewer runs at once")
    with open(path, "wb") as f:
        f.truncate(EXCHANGE_MIB << 20)
        f.write(BATCH_MAGIC + body + b"\0")


def qemu_command(qemu: str, kernel: Kernel, initrd: Path, image: Path, exchange: Path,
                 console: Path, memory_mib: int, kvm_amd: str = "",
                 vcpus: int = L1_VCPUS, tcg_thread: str = "single",
                 monitor: Path | None = None) -> list[str]:
    hmp = f"unix:{monitor},server=on,wait=off" if monitor else "none"
    return [qemu, "-accel", f"tcg,thread={tcg_thread}", "-cpu", "max", "-smp", str(vcpus),
            "-m", str(memory_mib), "-machine", "pc",
            "-display", "none", "-vga", "none", "-monitor", hmp, "-no-reboot",
            "-nodefaults", "-serial", f"file:{console}",
            "-kernel", str(kernel.bzimage), "-initrd", str(initrd), "-append",
            L1_CMDLINE + (f" ktstr.kvm_amd={kvm_amd}" if kvm_amd else ""),
            "-drive", f"file={image},format=raw,if=virtio,readonly=on",
            "-drive", f"file={exchange},format=raw,if=virtio"]


def _relay(console: Path, pos: int, progress: Progress, seen: dict[str, float],
           t0: float) -> int:
    """Relay L1's new `ktstr-nested:` console lines as progress; returns the new position
    (unchanged while L1 printed no complete line)."""
    try:
        with open(console, "rb") as f:
            f.seek(pos)
            chunk = f.read()
    except OSError:
        return pos
    end = chunk.rfind(b"\n")
    if end < 0:
        return pos
    for raw in chunk[:end].split(b"\n"):
        line = raw.decode("utf-8", "replace").strip()
        if "ktstr-nested:" in line:
            text = line[line.index("ktstr-nested:") + 14:]
            progress.step(f"L1: {text}")
            m = UPTIME_RE.search(line)
            if m:
                seen[m.group(1)] = time.monotonic() - t0
    return pos + end + 1


def _stalled(proc: subprocess.Popen, kernel: Kernel, monitor: Path, console: Path,
             out_dir: Path) -> None:
    """L1 printed nothing for STALL_S: sample where it is, keep its registers, stop it and
    raise the one-line answer."""
    syms = kernel_symbols(kernel.build_id, vmlinux=kernel.vmlinux, system_map=kernel.system_map)
    report = diagnose(proc.pid, monitor, SymbolMap(syms.addrs))
    regs = out_dir / "l1-stall.txt"
    with contextlib.suppress(OSError):
        regs.write_text(f"{report.summary()}\n\n{report.registers}\n")
    proc.kill()
    proc.wait()
    raise EngineError(f"L1 stalled: no console line for {STALL_S:.0f} s ({report.summary()}); "
                      f"its console ends: {_last_lines(console)}", f"see {regs} and {console}")


CRASH_MARKS = ("Kernel panic - not syncing", "BUG:", "general protection fault",
               "Oops:", "RIP: ")


def _last_lines(path: Path, n: int = 3) -> str:
    """The console's last `n` lines, after the first lines that say why a kernel crashed
    (a panic's stack trace alone would end the console and hide its reason)."""
    try:
        text = path.read_bytes()[-65536:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = text.strip().splitlines()
    why = [x.strip() for x in lines if any(m in x for m in CRASH_MARKS)][:3]
    tail = [x.strip() for x in lines[-n:] if x.strip() not in why]
    return " | ".join(why + (["..."] if why and tail else []) + tail)


def _extract(exchange: Path, out: Path) -> None:
    """The tar L1 wrote over the exchange disk, unpacked into `out` (names checked: nothing
    from the guest is trusted)."""
    with open(exchange, "rb") as f:
        if f.read(len(BATCH_MAGIC)) == BATCH_MAGIC:
            raise EngineError("L1 wrote no results (the batch is still on the exchange disk)")
    try:
        with tarfile.open(exchange, "r:") as tar:
            tar.extractall(out, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise EngineError(f"cannot read L1's results from {exchange}: {e}") from e


def run_bed(runs: list[NestedRun], out_dir: Path, *, kernel: Kernel,
            memory_mib: int = L1_MEMORY_MIB, timeout_s: float = 1800,
            bench: list[list[str]] | None = None, kvm_amd: str = KVM_AMD_PARAMS,
            vcpus: int = L1_VCPUS, tcg_thread: str | None = None,
            progress: Progress | None = None) -> BedResult:
    """Boot L1 once and do `runs` inside it; raises a one-line KtstrError when L1 cannot
    start or brings nothing back."""
    progress = progress or Progress()
    qemu = check_host(memory_mib)
    t_prep = time.monotonic()
    modules = fetch_modules(kernel, progress)
    agent = build_agent(progress)
    image = build_image(kernel, modules, agent, progress)
    initrd = boot_initramfs(modules)
    timings: dict[str, float] = {"prepare_s": round(time.monotonic() - t_prep, 2)}
    out_dir.mkdir(parents=True, exist_ok=True)
    console = out_dir / "l1-console.log"
    console.unlink(missing_ok=True)
    exchange = out_dir / ".exchange.img"
    _write_batch(exchange, runs, bench or [])
    monitor = out_dir / "l1-monitor.sock"
    monitor.unlink(missing_ok=True)
    cmd = qemu_command(qemu, kernel, initrd, image.path, exchange, console, memory_mib, kvm_amd,
                       vcpus, tcg_thread or tcg_mode(vcpus), monitor)
    progress.step(f"booting L1 (QEMU TCG, {vcpus} vCPU(s), {memory_mib} MiB) with "
                  f"{len(runs)} run(s)")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    pos, seen = 0, {}
    last_line = last_poke = t0
    pokes = 0
    try:
        while proc.poll() is None:
            new = _relay(console, pos, progress, seen, t0)
            now = time.monotonic()
            if new != pos:
                pos, last_line = new, now
            if now - last_line > STALL_S:
                _stalled(proc, kernel, monitor, console, out_dir)
            if now - last_poke >= POKE_S and poke(monitor):
                pokes, last_poke = pokes + 1, now
            if time.monotonic() - t0 > timeout_s:
                proc.kill()
                proc.wait()
                exchange.unlink(missing_ok=True)
                raise EngineError(f"L1 did not finish within {timeout_s:.0f} s and was killed; "
                                  f"its console ends: {_last_lines(console)}",
                                  f"see {console}")
            time.sleep(0.5)
        _relay(console, pos, progress, seen, t0)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        exchange.unlink(missing_ok=True)
        raise
    finally:
        monitor.unlink(missing_ok=True)
    timings["l1_wall_s"] = round(time.monotonic() - t0, 2)
    timings["l1_pokes"] = pokes
    for key, name in (("init at", "l1_init_host_s"), ("kvm modules loaded at", "l1_kvm_host_s")):
        if key in seen:
            timings[name] = round(seen[key], 2)
    err = (proc.stderr.read() if proc.stderr else b"").decode("utf-8", "replace").strip()
    try:
        if proc.returncode != 0:
            raise EngineError(f"{QEMU} (L1) exited with {proc.returncode}: "
                              f"{err.splitlines()[-1] if err else _last_lines(console)}")
        try:
            _extract(exchange, out_dir)
        except EngineError as e:
            text = console.read_text(errors="replace") if console.exists() else ""
            why = ("L1 ran out of memory" if "Out of memory" in text or "oom-kill" in text
                   else f"its console ends: {_last_lines(console)}")
            raise EngineError(f"{e.message}; {why}", f"see {console}") from None
    finally:
        exchange.unlink(missing_ok=True)
    try:
        report = json.loads((out_dir / RESULTS).read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"L1's {RESULTS} is unreadable: {e}") from e
    found: dict[str, Path] = {}
    for r in report.get("runs", []):
        ids = r.get("run_ids") or []
        if ids and isinstance(ids[-1], str) and (out_dir / "runs" / ids[-1]).is_dir():
            found[str(r.get("label"))] = out_dir / "runs" / ids[-1]
    return BedResult(out_dir, report, timings, console, found)


def describe(res: BedResult) -> list[str]:
    """Human lines for `ktstr selftest kvm`."""
    t, l1 = res.timings, res.report.get("l1", {})
    lines = [f"L1: {t.get('l1_wall_s')} s wall (prepare {t.get('prepare_s')} s); init at "
             f"{l1.get('uptime_init_s')} s uptime, KVM modules loaded at "
             f"{l1.get('uptime_kvm_s')} s; kvm_amd nested={l1.get('kvm_amd', {}).get('nested')}"]
    for r in res.report.get("runs", []):
        result = r.get("result") or {}
        topo = result.get("topology") or {}
        lines.append(f"  {r.get('label')}: {result.get('verdict', 'no result')} in "
                     f"{r.get('wall_s')} s, engine {result.get('engine')}, topology "
                     f"{topo.get('requested')} -> {topo.get('observed')}"
                     + (f", error {r['error']}" if r.get("error") else ""))
    return lines


__all__ = ["BedResult", "NestedRun", "run_bed", "describe", "KtstrError"]
