"""Guest shells on real VMs (QEMU TCG, the real sched_ext kernel, real schedulers): `ktstr
shell` with piped input and on a pty, attaching to a live run (two shells at once, the
monitor sampling on), a run that ends under an open shell, the time limit, a guest
without bpftool. docs/shell.md."""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vm, pytest.mark.slow]

KTSTR = [sys.executable, "-m", "ktstr_cli"]
PROMPT = "ktstr:/# "


@pytest.fixture
def run_store(tmp_path, kernel, schedulers):
    root = tmp_path / "store"
    root.mkdir()
    return root


def _env(store: Path) -> dict[str, str]:
    return {**os.environ, "KTSTR_HOME": str(store)}


def _run_dir(stderr: str) -> Path:
    m = re.search(r"run directory: (\S+)", stderr)
    assert m, stderr
    return Path(m.group(1))


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _events(run_dir: Path) -> list[dict]:
    from ktstr_vmm.rundir.timeline import read_events

    return read_events(run_dir / "events.jsonl")


def test_piped_input_prints_the_guest_output_and_the_run_is_judged(run_store):
    p = subprocess.run([*KTSTR, "shell", "-s", "scx_simple", "-t", "tiny-1llc"],
                       input="cat /sys/kernel/sched_ext/state\n", capture_output=True, text=True,
                       timeout=400, env=_env(run_store))
    assert (p.returncode, p.stdout) == (0, "enabled\n"), p.stderr
    run_dir = _run_dir(p.stderr)
    assert re.search(r"^ktstr: PASS \S+; run directory: ", p.stderr, re.M)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["verdict"] == "pass" and result["kind"] == "shell"
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["kind"] == "shell" and spec["workload"] == ""
    log = (run_dir / "shell.log").read_text()
    assert "--- shell 1 input ---\ncat /sys/kernel/sched_ext/state\n" in log
    assert "--- shell 1 output ---\nenabled\n" in log
    assert "ended: exited 0 ---" in log
    shells = [(e["action"], e.get("by")) for e in _events(run_dir) if e["kind"] == "shell"]
    assert shells == [("opened", "ktstr shell"), ("ended", None)]
    from ktstr_vmm.rundir.timeline import render_timeline

    timeline = render_timeline(_events(run_dir))
    assert re.search(r"shell 1 opened by ktstr shell \(guest pid \d+, pipes\)", timeline)
    assert "the run waits for its shell" in timeline and "shell 1 ended: exited 0" in timeline
    assert not list(Path("/dev/shm").glob(f"ktstr-{run_dir.name}*"))


def test_a_terminal_gets_a_pty_with_job_control_signals_and_window_size(run_store):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(KTSTR[0], [*KTSTR[1:], "shell", "-s", "scx_simple", "-t", "tiny-1llc"],
                          env=_env(run_store), encoding="utf-8", timeout=300,
                          dimensions=(30, 100))
    try:
        child.expect(r"ktstr: shell 1 on \S+ \(guest pid \d+\); helpers: scx scxmaps rqs help")
        child.expect_exact(PROMPT)
        child.sendline("stty size; tty")
        child.expect(r"30 100\r\n/dev/pts/\d+")
        child.expect_exact(PROMPT)
        child.setwinsize(40, 120)  # SIGWINCH here -> ShellResize -> TIOCSWINSZ there
        child.sendline("stty size")
        child.expect("40 120")
        child.expect_exact(PROMPT)
        # a foreground job that says when it runs (a ^C before that would reach the shell)
        job = "sh -c 'echo started; exec sleep 1000'"
        child.sendline(job)
        child.expect("\r\nstarted\r\n")
        child.sendcontrol("c")  # the guest's line discipline signals the foreground job
        child.expect_exact(PROMPT)
        child.sendline("echo rc=$?")
        child.expect("rc=130")
        child.expect_exact(PROMPT)
        child.sendline(job)
        child.expect("\r\nstarted\r\n")
        child.sendcontrol("z")
        child.expect(r"\[1\]\+\s+Stopped\s+sh -c")
        child.expect_exact(PROMPT)
        child.sendline("kill -9 %1; wait; scx")
        child.expect(r"state\s+enabled\r\nops\s+simple")
        child.expect_exact(PROMPT)
        child.sendline("exit")
        child.expect(r"ktstr: PASS \S+; run directory: (\S+)")
        run_dir = Path(child.match.group(1).strip())
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    log = (run_dir / "shell.log").read_text()
    assert "opened by ktstr shell: pty 100x30" in log and "40 120" in log


def _start_live_run(store: Path) -> tuple[subprocess.Popen, Path]:
    """A `ktstr run` long enough to outlast the test; returns it once its workload runs."""
    proc = subprocess.Popen([*KTSTR, "run", "--json", "-s", "scx_simple", "-t", "tiny-1llc",
                             "-d", "600s", "--no-auto-repro"], env=_env(store),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = store / "runs"

    def started() -> Path | None:
        for d in runs.glob("*") if runs.is_dir() else []:
            if any(e.get("phase") == "workload_started" for e in _events(d)):
                return d
        return None

    try:
        return proc, _wait(started, 300, "the run's workload to start")
    except BaseException:
        proc.kill()
        proc.wait()
        raise


class Attached:
    """`ktstr shell RUN` with its stdin a pipe we keep or close; reads its output on a thread."""

    def __init__(self, store: Path, run_id: str) -> None:
        self.proc = subprocess.Popen([*KTSTR, "shell", run_id], env=_env(store),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = bytearray()
        self.err = bytearray()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ, self.out)
        sel.register(self.proc.stderr, selectors.EVENT_READ, self.err)
        open_streams = 2
        while open_streams:
            for key, _ in sel.select():
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                with self._lock:
                    key.data.extend(data)

    def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def stdout(self) -> str:
        with self._lock:
            return self.out.decode(errors="replace")

    def stderr(self) -> str:
        with self._lock:
            return self.err.decode(errors="replace")


def test_shells_attach_to_a_live_run_while_the_monitor_samples_and_end_with_it(run_store):
    proc, run_dir = _start_live_run(run_store)
    try:
        keeper = Attached(run_store, run_dir.name)  # stays open until the run ends
        keeper.send("echo keeper-$$\n")
        _wait(lambda: "keeper-" in keeper.stdout(), 120, "the first shell's output")
        samples_before = len((run_dir / "monitor.jsonl").read_text().splitlines())
        p = subprocess.run([*KTSTR, "shell", run_dir.name], env=_env(run_store),
                           input="cat /sys/kernel/sched_ext/state; echo second-$$; echo oops >&2; exit 7\n",
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 7, p.stderr
        assert re.fullmatch(r"enabled\nsecond-\d+\n", p.stdout)
        assert p.stderr == "oops\n"
        assert keeper.proc.poll() is None  # the first shell is still open
        # the run goes on and its monitor keeps sampling while shells are open
        _wait(lambda: len((run_dir / "monitor.jsonl").read_text().splitlines()) > samples_before + 5,
              60, "new monitor samples")
        status = json.loads((run_dir / "status.json").read_text())
        assert status["phase"] == "running"
        # `ktstr stop`: the VM goes; the open shell is told and exits 255
        subprocess.run([*KTSTR, "stop", run_dir.name], env=_env(run_store), check=True,
                       capture_output=True, timeout=60)
        assert keeper.proc.wait(timeout=120) == 255
        assert "ktstr: shell ended: the run was stopped; the shell is closed\n" in keeper.stderr()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # an ended run says so
    p = subprocess.run([*KTSTR, "shell", run_dir.name], env=_env(run_store), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith(f"ktstr: error: run {run_dir.name} has ended (done, verdict ")
    ends = [e for e in _events(run_dir) if e["kind"] == "shell" and e["action"] == "ended"]
    assert [(e["sid"], e["code"]) for e in ends] == [(2, 7), (1, 255)]
    log = (run_dir / "shell.log").read_text()
    assert "--- shell 2 output ---\nenabled\nsecond-" in log


def test_time_up_ends_the_shell_and_a_guest_without_bpftool_still_has_one(run_store, monkeypatch):
    """In-process: the run's userland is built without bpftool, and --timeout leaves the
    shell 15 s; the guest closes it, says why, and the run is judged as usual."""
    from ktstr_vmm.guest import userland
    from ktstr_vmm.run.runner import Run, prepare
    from ktstr_vmm.run.shellclient import bridge, connect
    from ktstr_vmm.run.shellhub import SHELL_KIND, hold_ms, min_shell_timeout_s
    from ktstr_vmm.spec import RunSpec, parse_topology
    from ktstr_vmm.store.store import Store

    monkeypatch.setenv("KTSTR_HOME", str(run_store))
    monkeypatch.setattr(userland, "BPFTOOL", ())
    real_which = userland.shutil.which
    monkeypatch.setattr(userland.shutil, "which",
                        lambda name: None if name == "bpftool" else real_which(name))
    topo = parse_topology("tiny-1llc")
    timeout = min_shell_timeout_s(topo.vcpus) + 5
    spec = RunSpec(name="nobpftool", scheduler="scx_simple", topology=topo, workload=(),
                   kind=SHELL_KIND, timeout_s=timeout, auto_repro=False,
                   duration_s=hold_ms(timeout, topo.vcpus) / 1000)
    prep = prepare(spec)
    assert prep.userland_missing == (
        "no bpftool on the host (apt-get install bpftool): scxmaps will say so in the guest",)
    rd = Store().create_run(spec)
    done: dict = {}
    t = threading.Thread(target=lambda: done.setdefault("result", Run(prep, rd, None).execute()))
    t.start()
    try:
        _wait(lambda: (rd.read_json("status.json") or {}).get("phase") == "running", 300,
              "the guest to be ready")
        sock, _ = connect(rd.path, tty=False, primary=True, by="test")
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.write(in_w, b"scxmaps; echo rc=$?\n")  # and the input stays open
        end = bridge(sock, stdin_fd=in_r, stdout_fd=out_w, stderr_fd=err_w, tty=False)
        os.close(out_w)
        os.close(err_w)
        out, err = os.read(out_r, 4096), os.read(err_r, 4096)
        for fd in (in_r, in_w, out_r, err_r):
            os.close(fd)
    finally:
        t.join(timeout=300)
    secs = hold_ms(timeout, topo.vcpus) // 1000
    why = f"the run's time is up after {secs} s; the shell ends with it"
    assert (end.code, end.why) == (129, why)  # SIGHUP
    assert out == b"rc=1\n"
    assert b"scxmaps: no bpftool in this guest (install the bpftool package on the host)\n" in err
    assert f"ktstr: {why}".encode() in err
    result = done["result"]
    assert result["verdict"] == "pass"
    assert why in result["stats"]["notes"]
    assert any(e.get("text", "").startswith("no bpftool on the host") for e in _events(rd.path)
               if e["kind"] == "warning")
