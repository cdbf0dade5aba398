"""What L1 runs (`python -m ktstr_vmm.nested.inside /dev/vdb`), started by L1's init.

The exchange disk starts with the batch (BATCH_MAGIC, then JSON, then NUL bytes). Each run
goes through the product's own CLI, `python -m ktstr_cli run ... --json`, on L1's /dev/kvm
(kvm_amd); a run with "control" set is paused, resumed, snapshotted and stopped through
its control socket once it is running. `ktstr doctor`, L1's dmesg and what happened
(nested.json) go with the store's run directories into one tar written over the exchange
disk from offset 0, which the host reads as a plain tar file. Progress lines on the
console start with "ktstr-nested:" (bed.py relays them).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import KtstrError
from ..run.control import send_command

BATCH_MAGIC = b"KTSTR-NESTED-BATCH 1\n"
BATCH_MAX = 1 << 20
RESULTS = "nested.json"


def say(text: str) -> None:
    sys.stdout.write(f"ktstr-nested: {text}\n")
    sys.stdout.flush()


def read_batch(disk: str) -> dict[str, Any]:
    with open(disk, "rb") as f:
        head = f.read(BATCH_MAX)
    if not head.startswith(BATCH_MAGIC):
        raise SystemExit(f"ktstr-nested: {disk} holds no batch")
    return json.loads(head[len(BATCH_MAGIC):].split(b"\0", 1)[0])


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ktstr_cli", *args]


def _new_run_dir(runs: Path, before: set[str], deadline: float) -> Path | None:
    while time.monotonic() < deadline:
        if runs.is_dir():
            new = sorted(p for p in runs.iterdir() if p.name not in before
                         and not p.name.startswith("."))
            if new:
                return new[-1]
        time.sleep(0.2)
    return None


def drive_control(runs: Path, before: set[str], proc: subprocess.Popen,
                  log: list[dict[str, Any]], wait_s: float) -> None:
    """Once the run is running: pause, resume, snapshot, stop through control.sock."""
    deadline = time.monotonic() + wait_s
    rd = _new_run_dir(runs, before, deadline)
    if rd is None:
        log.append({"cmd": "find-run", "ok": False, "error": "no run directory appeared"})
        return
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            phase = json.loads((rd / "status.json").read_text()).get("phase")
        except (OSError, ValueError):
            phase = None
        if phase == "running":
            break
        time.sleep(0.3)
    else:
        log.append({"cmd": "wait-running", "ok": False, "error": "the run never got to running"})
        return
    for cmd in ("pause", "resume", "snapshot", "stop"):
        t0 = time.monotonic()
        try:
            reply = send_command(rd, cmd, timeout=120.0)
            log.append({"cmd": cmd, "ok": True, "reply": reply,
                        "s": round(time.monotonic() - t0, 3)})
        except KtstrError as e:
            log.append({"cmd": cmd, "ok": False, "error": e.one_line(),
                        "s": round(time.monotonic() - t0, 3)})
        say(f"control {cmd}: {log[-1]['ok']}")
        if cmd == "pause":
            time.sleep(1.0)  # stays paused a moment: the resume must bring it back


KVM_STATS = Path("/sys/kernel/debug/kvm")


def kvm_stats() -> dict[str, int]:
    """L1 KVM's VM-wide counters (exits, page faults, halts, ...) from debugfs."""
    out: dict[str, int] = {}
    if not KVM_STATS.is_dir():
        return out
    for p in KVM_STATS.iterdir():
        if p.is_file():
            try:
                out[p.name] = int(p.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return out


def report_progress(label: str, runs: Path, before: set[str], proc: subprocess.Popen,
                    every_s: float = 20.0) -> None:
    """Every `every_s`: the run's phase and the last line of L2's console."""
    t0 = time.monotonic()
    while proc.poll() is None:
        time.sleep(1.0)
        if time.monotonic() - t0 < every_s:
            continue
        t0 = time.monotonic()
        rd = _new_run_dir(runs, before, time.monotonic() + 0.1)
        if rd is None:
            continue
        try:
            phase = json.loads((rd / "status.json").read_text()).get("phase")
            tail = (rd / "console.log").read_bytes()[-400:].decode("utf-8", "replace")
            last = tail.strip().splitlines()[-1][:120] if tail.strip() else ""
        except (OSError, ValueError):
            continue
        say(f"run {label}: {phase}; L2 console: {last}")


def leftovers() -> list[str]:
    """What a finished run must not leave in L1: a `ktstr_cli` process other than this
    one's parent chain, or a ktstr file in /dev/shm (the KVM engine's VM lives in the run's
    own process: its threads, fds and memfd go with it)."""
    mine = {os.getpid(), os.getppid()}
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in mine:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ktstr_cli" in cmd:
            out.append(f"pid {d.name}: {cmd.strip()[:120]}")
    out += [f"/dev/shm/{p.name}" for p in Path("/dev/shm").glob("ktstr-*")]
    return out


def one_run(item: dict[str, Any], store: Path) -> dict[str, Any]:
    label = item["label"]
    args = [str(a) for a in item["args"]]
    runs = store / "runs"
    before = {p.name for p in runs.iterdir()} if runs.is_dir() else set()
    command = str(item.get("command") or "run")
    say(f"run {label}: ktstr {command} {' '.join(args)}")
    stats0 = kvm_stats()
    t0 = time.monotonic()
    env = {**os.environ, **{str(k): str(v) for k, v in (item.get("env") or {}).items()}}
    shell = command == "shell"
    proc = subprocess.Popen(_cmd("shell", *args) if shell else _cmd("run", *args, "--json"),
                            stdin=subprocess.PIPE if shell else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    control: list[dict[str, Any]] = []
    th = None
    if item.get("control"):
        th = threading.Thread(target=drive_control,
                              args=(runs, before, proc, control, float(item.get("wait_s", 600))),
                              daemon=True)
        th.start()
    watcher = threading.Thread(target=report_progress, args=(label, runs, before, proc),
                               daemon=True)
    watcher.start()
    out, err = proc.communicate(str(item.get("stdin") or "") if shell else None)
    wall = time.monotonic() - t0
    if th is not None:
        th.join(5)
    new = sorted(p.name for p in runs.iterdir() if p.name not in before) if runs.is_dir() else []
    try:
        if shell:  # `ktstr shell` prints the shell's output; its verdict is in result.json
            result = json.loads((runs / new[-1] / "result.json").read_text()) if new else None
        else:
            result = json.loads(out) if out.strip() else None
    except (OSError, ValueError):
        result = None
    stats1 = kvm_stats()
    delta = {k: v - stats0.get(k, 0) for k, v in stats1.items() if v != stats0.get(k, 0)}
    say(f"run {label}: exit {proc.returncode} in {wall:.1f} s, verdict "
        f"{(result or {}).get('verdict')}")
    return {"label": label, "args": args, "rc": proc.returncode, "wall_s": round(wall, 3),
            "result": result, "stderr": err[-4000:], "run_ids": new, "control": control,
            **({"stdout": out[-4000:]} if shell else {}),
            "kvm_stats": delta, "leftovers": leftovers()}


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as e:
        return f"({e})"


def l1_facts() -> dict[str, Any]:
    flags = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1]
            break
    params = {}
    for p in ("nested", "npt", "avic", "vgif", "nrips"):
        params[p] = _read(f"/sys/module/kvm_amd/parameters/{p}").strip()
    return {"cpu_flags": sorted(set(flags.split()) & {"svm", "npt", "vgif", "nrip_save",
                                                      "hypervisor", "xsave", "avx"}),
            "kvm_amd": params, "dev_kvm": os.path.exists("/dev/kvm"),
            "kvm_pvm": os.path.exists("/sys/module/kvm_pvm"),
            "uptime_init_s": float(os.environ.get("KTSTR_NESTED_UPTIME_INIT", "0") or 0),
            "uptime_kvm_s": float(os.environ.get("KTSTR_NESTED_UPTIME_KVM", "0") or 0),
            "mem_total_kib": next((int(x.split()[1]) for x in _read("/proc/meminfo").splitlines()
                                   if x.startswith("MemTotal:")), 0)}


def write_results(disk: str, store: Path, report: dict[str, Any], extra: dict[str, str]) -> int:
    with open(disk, "r+b") as f:
        f.seek(0, 2)
        size = f.seek(0, 2)
        f.seek(0)
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, text in [(RESULTS, json.dumps(report, indent=1)), *extra.items()]:
                data = text.encode()
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                ti.mtime = int(time.time())
                tar.addfile(ti, io.BytesIO(data))
            if (store / "runs").is_dir():
                tar.add(store / "runs", arcname="runs",
                        filter=lambda ti: ti if (ti.isfile() or ti.isdir()) else None)
        used = f.tell()
        f.flush()
        os.fsync(f.fileno())
    if used > size:
        raise OSError(f"the results ({used} bytes) do not fit the exchange disk ({size})")
    return used


def main(argv: list[str]) -> int:
    disk = argv[0] if argv else "/dev/vdb"
    batch = read_batch(disk)
    store = Path(os.environ.get("KTSTR_HOME", "/run/ktstr/store"))
    store.mkdir(parents=True, exist_ok=True)
    facts = l1_facts()
    say(f"/dev/kvm {'present' if facts['dev_kvm'] else 'missing'}, kvm_amd nested="
        f"{facts['kvm_amd']['nested']} npt={facts['kvm_amd']['npt']}")
    t0 = time.monotonic()
    doc = subprocess.run(_cmd("doctor"), capture_output=True, text=True)
    say(f"doctor: exit {doc.returncode} in {time.monotonic() - t0:.1f} s")
    results = []
    for item in batch.get("runs", []):
        try:
            results.append(one_run(item, store))
        except Exception as e:  # noqa: BLE001 - one broken run must not lose the others
            results.append({"label": item.get("label"), "error": repr(e)})
    extra = {"doctor.txt": doc.stdout + doc.stderr, "kallsyms.txt": _read("/proc/kallsyms"),
             "dmesg.txt": subprocess.run(["dmesg"], capture_output=True, text=True).stdout}
    for name in batch.get("bench", []):
        t0 = time.monotonic()
        b = subprocess.run([sys.executable, *name], capture_output=True, text=True)
        extra[f"bench-{len(extra)}.txt"] = b.stdout + b.stderr
        say(f"bench {name[0]}: exit {b.returncode} in {time.monotonic() - t0:.1f} s")
    report = {"format": 1, "l1": facts, "doctor_rc": doc.returncode, "runs": results}
    try:
        used = write_results(disk, store, report, extra)
    except OSError as e:
        say(f"cannot write the results: {e}")
        return 1
    say(f"results written ({used >> 10} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
