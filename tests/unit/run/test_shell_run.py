"""Guest shells without a VM, the host's side: `ktstr shell`'s refusals, the runner's hub
and the terminal client driven through a real control socket by a fake shell port."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from ktstr_vmm.errors import UsageError
from ktstr_vmm.guest import shellframes as sf
from ktstr_vmm.guest.wire import Decoder, MsgType
from ktstr_vmm.run.control import ControlServer
from ktstr_vmm.run.shellclient import bridge, connect
from ktstr_vmm.run.shellhub import ShellHub, ShellLog, hold_ms


def test_the_hold_ends_before_the_watchdog():
    assert hold_ms(3600, 4) == round((3600 - 64 - 20) * 1000)
    assert hold_ms(10, 4) == 0


def test_too_short_timeout_message(store, capsys):
    from ktstr_cli.main import main

    assert main(["shell", "-t", "tiny-1llc", "--timeout", "30s"]) == 2
    assert capsys.readouterr().err == (
        "ktstr: error: --timeout 30s is too short for a shell on 4 vCPUs (booting and stopping "
        "take up to 84s) (use at least 94s)\n")


def test_attaching_with_run_options_is_refused(store, capsys):
    from ktstr_cli.main import main

    assert main(["shell", "somerun", "-s", "scx_simple"]) == 2
    assert capsys.readouterr().err == (
        "ktstr: error: --scheduler is for a new run, not for attaching to run somerun "
        "(drop RUN to boot a new guest with these options)\n")


def test_attaching_to_an_ended_run_says_so(store, capsys):
    from support.store_helpers import make_run

    from ktstr_cli.main import main

    path = make_run(store, "20260101-000000-scx_simple-tiny-1llc-aaaa")
    assert main(["shell", path.name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ktstr: error: run {path.name} has ended (done, verdict ")
    assert err.endswith("there is no guest for a shell (start a new one: ktstr shell [run options])\n")


# ------------------------------------------------------------------------ the hub, no VM

class FakeGuest:
    """The guest side of a shell port, in Python: answers ShellOpen, echoes data upper-cased,
    ends a session on ShellEof with code 0 and on ShellClose with 129."""

    def __init__(self, banner: bytes = b"") -> None:
        self.banner = banner  # sent right behind ShellOpened, as busybox's prompt is
        self.host, self.guest = socket.socketpair()
        self.has_shell = True
        self.seen: list[sf.ShellMsg] = []
        threading.Thread(target=self._run, daemon=True).start()

    def read_shell(self, timeout: float):
        self.host.settimeout(timeout)
        try:
            return self.host.recv(65536) or None
        except TimeoutError:
            return b""
        except OSError:
            return None

    def write_shell(self, data: bytes) -> None:
        self.host.sendall(data)

    def _run(self) -> None:
        dec = Decoder()
        while True:
            data = self.guest.recv(65536)
            if not data:
                return
            for f in dec.feed(data):
                m = sf.parse(f)
                self.seen.append(m)
                if m.type is MsgType.ShellOpen:
                    self.guest.sendall(sf.opened_frame(m.sid, 100 + m.sid)
                                       + (sf.data_frames(m.sid, self.banner) if self.banner else b""))
                elif m.type is MsgType.ShellData:
                    self.guest.sendall(sf.data_frames(m.sid, m.data.upper()))
                elif m.type is MsgType.ShellEof:
                    self.guest.sendall(sf.exit_frame(m.sid, 0, "exited 0"))
                elif m.type is MsgType.ShellClose:
                    self.guest.sendall(sf.exit_frame(m.sid, 129, "closed by the host"))

    def stop(self) -> None:
        self.guest.close()


def test_two_clients_share_the_port_and_each_gets_its_own_session(tmp_path):
    guest = FakeGuest()
    events: list[dict] = []
    hub = ShellHub(guest, ShellLog(tmp_path / "shell.log", 0.0),
                   lambda kind, **f: events.append({"kind": kind, **f}))
    srv = ControlServer(tmp_path, {}, streams={"shell": lambda req, conn: hub.attach(conn, req, 5)})
    try:
        outs = []
        for word in (b"one\n", b"two\n"):
            sock, reply = connect(tmp_path, tty=False, by="test", timeout=10)
            r = _pipe_with(word)
            out_r, out_w = os.pipe()
            end = bridge(sock, stdin_fd=r, stdout_fd=out_w, stderr_fd=out_w, tty=False)
            os.close(out_w)
            outs.append((reply["sid"], reply["pid"], end.code, os.read(out_r, 100)))
        assert outs == [(1, 101, 0, b"ONE\n"), (2, 102, 0, b"TWO\n")]
    finally:
        srv.close()
        guest.stop()
        hub.close("test over")
    assert [(e["action"], e["sid"]) for e in events] == [
        ("opened", 1), ("ended", 1), ("opened", 2), ("ended", 2)]
    log = (tmp_path / "shell.log").read_text()
    assert "--- shell 1 input ---\none\n" in log and "--- shell 1 output ---\nONE\n" in log


def test_a_run_whose_vm_is_gone_refuses_new_shells_with_the_reason(tmp_path):
    guest = FakeGuest()
    hub = ShellHub(guest, ShellLog(tmp_path / "shell.log", 0.0), lambda *a, **k: None)
    srv = ControlServer(tmp_path, {}, streams={"shell": lambda req, conn: hub.attach(conn, req, 5)})
    try:
        hub.close("the run is over (VM poweroff); the shell is closed")
        with pytest.raises(UsageError) as e:
            connect(tmp_path, tty=False, timeout=10)
        assert e.value.one_line() == (
            "shell refused: the run is over (VM poweroff); the shell is closed")
    finally:
        srv.close()
        guest.stop()


def _pipe_with(data: bytes) -> int:
    """The read end of a pipe holding `data` and then its end."""
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    return r


def test_control_refuses_a_stream_it_does_not_serve(tmp_path):
    srv = ControlServer(tmp_path, {"status": lambda req: {}})
    try:
        with pytest.raises(UsageError, match="'shell' is not available for this run"):
            connect(tmp_path, tty=False, timeout=5)
    finally:
        srv.close()


def test_a_stream_handler_that_breaks_answers_and_the_server_lives_on(tmp_path):
    def broken(req, conn):
        raise RuntimeError("boom")

    srv = ControlServer(tmp_path, {"status": lambda req: {"phase": "running"}},
                        streams={"shell": broken})
    try:
        with pytest.raises(UsageError) as e:
            connect(tmp_path, tty=False, timeout=5)
        assert e.value.one_line() == "shell refused: internal error: boom"
        from ktstr_vmm.run.control import send_command

        assert send_command(tmp_path, "status") == {"ok": True, "phase": "running"}
    finally:
        srv.close()


def test_shell_log_names_the_session_before_its_first_output(tmp_path):
    guest = FakeGuest(banner=b"~ # ")
    hub = ShellHub(guest, ShellLog(tmp_path / "shell.log", 0.0), lambda *a, **k: None)
    srv = ControlServer(tmp_path, {}, streams={"shell": lambda req, conn: hub.attach(conn, req, 5)})
    try:
        sock, reply = connect(tmp_path, tty=False, by="test", timeout=10)
        out_r, out_w = os.pipe()
        end = bridge(sock, stdin_fd=_pipe_with(b""), stdout_fd=out_w, stderr_fd=out_w, tty=False)
        os.close(out_w)
        assert (end.code, os.read(out_r, 100)) == (0, b"~ # ")
    finally:
        srv.close()
        guest.stop()
        hub.close("test over")
    lines = (tmp_path / "shell.log").read_text().splitlines()
    assert lines[0].startswith("--- shell 1 +") and lines[0].endswith(
        ": opened by test: pipes 0x0, pid 101 ---"), lines
    assert lines[1:3] == ["--- shell 1 output ---", "~ # "], lines
