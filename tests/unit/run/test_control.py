import os
import threading

import pytest

from ktstr_vmm.errors import UsageError
from ktstr_vmm.run.control import ControlServer, send_command


def test_commands_reach_handlers_and_replies_come_back(tmp_path):
    seen = []
    srv = ControlServer(tmp_path, {
        "pause": lambda req: seen.append("pause") or {"paused": True},
        "snapshot": lambda req: {"path": "snapshots/1.json"},
    })
    try:
        assert send_command(tmp_path, "pause") == {"ok": True, "paused": True}
        assert send_command(tmp_path, "snapshot")["path"] == "snapshots/1.json"
        with pytest.raises(UsageError, match="'stop' is not available"):
            send_command(tmp_path, "stop")
    finally:
        srv.close()
    assert seen == ["pause"]
    assert not (tmp_path / "control.sock").exists()


def test_finished_run_says_not_live(tmp_path):
    with pytest.raises(UsageError) as e:
        send_command(tmp_path, "pause")
    assert e.value.one_line() == (
        f"run {tmp_path.name} is not live (no control socket) "
        "(the run has finished or was interrupted)")


def test_unknown_command_refused_before_connecting(tmp_path):
    with pytest.raises(UsageError, match="unknown control command 'explode'"):
        send_command(tmp_path, "explode")


def test_concurrent_clients(tmp_path):
    srv = ControlServer(tmp_path, {"status": lambda req: {"phase": "running"}})
    results = []
    try:
        ts = [threading.Thread(target=lambda: results.append(send_command(tmp_path, "status")))
              for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        srv.close()
    assert results == [{"ok": True, "phase": "running"}] * 8


def test_deep_run_directory_beyond_sun_path(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(deep / "control.sock")) > 108
    cwd = os.getcwd()
    srv = ControlServer(deep, {"status": lambda req: {"phase": "running"}})
    try:
        assert send_command(deep, "status") == {"ok": True, "phase": "running"}
    finally:
        srv.close()
    assert os.getcwd() == cwd
