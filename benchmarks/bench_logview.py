"""First screen of a 200 MB scheduler log in a 120x40 tmux pane: `ktstr tui FILE` against
`less`, toolong (`tl`) and a bare Textual app that shows one line - same file, same run.

For each viewer: start it in a fresh tmux pane (the viewer is the pane's process, via
exec), poll capture-pane until file content is on screen (time to first screen),
then read the process's peak RSS (VmHWM) at that moment and again after a settle window
(toolong and ours keep indexing in the background). A viewer's first screen is the file's
first or last line on screen (less and ours open at the top, toolong at the end).. Each viewer runs `--rounds` times;
the median is reported, with ratios against the bare Textual app and toolong.

toolong pins textual<0.59, so it cannot share the project's .venv (Textual 8): the script
makes its own venv for it under the cache dir on first use (`--no-toolong` skips it).

    .venv/bin/python benchmarks/bench_logview.py [--size-mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ktstr_vmm import paths  # noqa: E402

FIRST_LINE = "ktstr-bench first line: scx_simple local=3 global=2"
LAST_LINE = "ktstr-bench last line: EXIT: done"  # toolong opens at the end of a file
BARE_APP = '''
import sys
from textual.app import App
from textual.widgets import Static

class Bare(App):
    def compose(self):
        with open(sys.argv[1], "rb") as f:
            yield Static(f.readline().decode("utf-8", "replace").rstrip("\\n"))

Bare().run()
'''


def make_log(path: Path, size_mb: int) -> None:
    """A scheduler log of size_mb: the recorded scx_bpf_error output repeated with
    changing counters (~60 bytes a line), a distinct first line."""
    sample = (REPO / "tests" / "data" / "eval" / "scx_bpf_error.scheduler-output.txt").read_text()
    body = [ln for ln in sample.splitlines() if ln.strip()]
    target = size_mb << 20
    with open(path, "w") as f:
        f.write(FIRST_LINE + "\n")
        written = 0
        i = 0
        block: list[str] = []
        while written < target:
            block.clear()
            for ln in body:
                i += 1
                block.append(f"local={i * 3} global={i} | {ln}\n")
            chunk = "".join(block)
            f.write(chunk)
            written += len(chunk)
        f.write(LAST_LINE + "\n")


def toolong_bin() -> Path | None:
    venv = paths.cache_dir() / "bench" / "toolong-venv"
    tl = venv / "bin" / "tl"
    if tl.exists():
        return tl
    print(f"bench: creating a venv for toolong at {venv} (textual<0.59 cannot share .venv)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "toolong"], check=True,
                       timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        print(f"bench: toolong unavailable: {e}")
        return None
    return tl if tl.exists() else None


@dataclass
class Sample:
    first_screen_s: float
    rss_first_mb: float
    rss_peak_mb: float


TMUX_SERVER = f"ktstr-bench-{os.getpid()}"  # a private server: nobody else's options


def tmux(*args: str, check: bool = True) -> str:
    return subprocess.run(["tmux", "-L", TMUX_SERVER, *args], capture_output=True, text=True,
                          timeout=20, check=check).stdout


def vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def measure(name: str, argv: list[str], env: dict[str, str], settle_s: float,
            timeout_s: float = 60.0) -> Sample:
    session = f"ktstr-bench-{os.getpid()}"
    tmux("kill-session", "-t", session, check=False)
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    cmd = f"exec env {exports} {' '.join(argv)}"
    t0 = time.monotonic()
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", cmd)
    try:
        pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        while True:
            screen = tmux("capture-pane", "-p", "-t", session)
            if FIRST_LINE in screen or LAST_LINE in screen:
                first = time.monotonic() - t0
                break
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"{name}: no first screen within {timeout_s}s:\n{screen}")
            time.sleep(0.002)
        rss_first = vm_hwm_mb(pid)
        time.sleep(settle_s)
        rss_peak = vm_hwm_mb(pid)
        return Sample(first, rss_first, rss_peak)
    finally:
        tmux("kill-session", "-t", session, check=False)
        time.sleep(0.3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds after the first screen before reading peak RSS")
    ap.add_argument("--no-toolong", action="store_true")
    ap.add_argument("--toolong", type=Path, default=None, help="a `tl` binary to use")
    ap.add_argument("--log", type=Path, default=None, help="use this file instead")
    args = ap.parse_args()
    if shutil.which("tmux") is None or shutil.which("less") is None:
        print("bench: needs tmux and less")
        return 2
    work = Path(tempfile.mkdtemp(prefix="ktstr-bench-"))
    try:
        log = args.log
        if log is None:
            log = work / "sched.log"
            t = time.monotonic()
            make_log(log, args.size_mb)
            print(f"bench: wrote {log.stat().st_size / (1 << 20):.0f} MB "
                  f"({sum(1 for _ in open(log, 'rb')):,} lines) in {time.monotonic() - t:.1f}s")
        bare = work / "bare_textual.py"
        bare.write_text(BARE_APP)
        store = work / "store"
        env = {"TERM": "xterm-256color", "KTSTR_HOME": str(store),
               "KTSTR_CACHE": str(work / "cache")}
        viewers: list[tuple[str, list[str]]] = [
            ("less", ["less", str(log)]),
            ("bare textual", [sys.executable, str(bare), str(log)]),
            ("ktstr tui", [sys.executable, "-m", "ktstr_cli", "tui", str(log)]),
            # the same app without the `ktstr` CLI in front (which imports every command)
            ("KtstrApp", [sys.executable, "-c", f"'import sys; from pathlib import Path; "
                          f"from ktstr_tui.app import KtstrApp; "
                          f"KtstrApp(Path(\"{store}\"), open_path=Path(sys.argv[1])).run()'",
                          str(log)]),
        ]
        if not args.no_toolong:
            tl = args.toolong or toolong_bin()
            if tl is not None:
                viewers.append(("toolong", [str(tl), str(log)]))
        results: dict[str, list[Sample]] = {n: [] for n, _ in viewers}
        for _ in range(args.rounds):  # interleaved, so load changes hit every viewer alike
            for name, argv in viewers:
                results[name].append(measure(name, argv, env, args.settle))
        med = {n: Sample(statistics.median(s.first_screen_s for s in r),
                         statistics.median(s.rss_first_mb for s in r),
                         statistics.median(s.rss_peak_mb for s in r))
               for n, r in results.items()}
        print(f"\nfirst screen of {log.stat().st_size / (1 << 20):.0f} MB log, 120x40 tmux pane, "
              f"median of {args.rounds}, load average {os.getloadavg()[0]:.1f}:")
        print(f"{'viewer':<14}{'first screen':>14}{'RSS at 1st':>12}{'peak RSS':>12}"
              f"  (peak = VmHWM {args.settle:.0f}s later)")
        for n, s in med.items():
            print(f"{n:<14}{s.first_screen_s:>13.3f}s{s.rss_first_mb:>10.0f}MB"
                  f"{s.rss_peak_mb:>10.0f}MB")
        ours = med["ktstr tui"]
        bare_s = med["bare textual"]
        print(f"\nktstr tui - bare textual: {ours.first_screen_s - bare_s.first_screen_s:+.3f}s "
              f"(goal <= +0.15s); KtstrApp alone - bare textual: "
              f"{med['KtstrApp'].first_screen_s - bare_s.first_screen_s:+.3f}s")
        if "toolong" in med:
            tl_s = med["toolong"]
            print(f"ktstr tui / toolong: {ours.first_screen_s / tl_s.first_screen_s:.2f}x time "
                  f"(goal <= 0.5x), {ours.rss_peak_mb / tl_s.rss_peak_mb:.2f}x peak RSS")
        print(f"ktstr tui peak RSS {ours.rss_peak_mb:.0f} MB (goal < 100 MB)")
        return 0
    finally:
        tmux("kill-server", check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
