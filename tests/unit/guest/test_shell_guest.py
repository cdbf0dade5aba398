"""Guest shells without a VM, the guest's side: shell frames, the shell userland that goes
into the initramfs (busybox, bpftool, helpers), the guest spec's shell line. docs/shell.md."""

from __future__ import annotations

import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_initramfs import read_cpio

from ktstr_vmm.guest import shellframes as sf
from ktstr_vmm.guest import userland
from ktstr_vmm.guest.initramfs import build_archive
from ktstr_vmm.guest.spec import parse_guest_spec, render_guest_spec
from ktstr_vmm.guest.wire import Decoder, MsgType, encode
from ktstr_vmm.spec import RunSpec, parse_topology


def _one(data: bytes) -> sf.ShellMsg:
    frames = Decoder().feed(data)
    assert len(frames) == 1
    msg = sf.parse(frames[0])
    assert msg is not None
    return msg


def test_frames_round_trip_with_their_session_id():
    m = _one(sf.open_frame(7, 40, 120, tty=True, primary=True, term="xterm-256color"))
    assert (m.type, m.sid, m.rows, m.cols, m.tty, m.primary, m.term) == (
        MsgType.ShellOpen, 7, 40, 120, True, True, "xterm-256color")
    m = _one(sf.resize_frame(3, 50, 200))
    assert (m.type, m.sid, m.rows, m.cols) == (MsgType.ShellResize, 3, 50, 200)
    m = _one(sf.exit_frame(2, 130, "killed by signal 2"))
    assert (m.type, m.sid, m.code, m.why) == (MsgType.ShellExit, 2, 130, "killed by signal 2")
    m = _one(sf.opened_frame(4, 0, "no /bin/sh in the guest"))
    assert (m.pid, m.why) == (0, "no /bin/sh in the guest")
    m = _one(sf.data_frames(9, b"err\n", stderr=True))
    assert (m.data, m.stderr) == (b"err\n", True)
    # relabelled for another session, nothing else changes
    assert _one(sf.with_sid(m, 11)) == sf.ShellMsg(MsgType.ShellData, 11, data=b"err\n", stderr=True)


def test_big_input_is_cut_into_chunks_the_guest_accepts():
    frames = Decoder().feed(sf.data_frames(1, b"x" * 10000))
    assert [len(f.payload) - 4 for f in frames] == [4096, 4096, 1808]


def test_a_term_the_guest_would_refuse_is_not_sent():
    assert sf.clean_term("xterm-256color") == "xterm-256color"
    assert sf.clean_term("x;rm -rf /") == ""
    assert _one(sf.open_frame(1, 24, 80, tty=True, term="a b")).term == ""


@given(st.sampled_from(sorted(sf.SHELL_TYPES)), st.binary(max_size=64), st.integers(0, 0xFFFF))
def test_parse_never_raises_on_guest_bytes(t, payload, flags):
    frames = Decoder().feed(encode(t, payload, flags))
    msg = sf.parse(frames[0])
    assert msg is None or msg.type == t


def test_the_guest_userland_has_busybox_links_bpftool_and_the_helpers(tmp_path):
    u = userland.guest_userland()
    if "/bin/busybox" not in u.files:
        pytest.skip("busybox-static is not installed on this host")
    assert u.links["/bin/sh"] == "/bin/busybox"
    assert "/sbin/init" not in u.links  # /init is the agent
    for helper in ("scx", "scxmaps", "rqs"):
        blob, mode = u.data[f"/usr/local/bin/{helper}"]
        assert blob.startswith(b"#!/bin/sh\n") and mode == 0o755
    assert b"scxmaps" in u.data[userland.SHRC][0]
    if "/usr/sbin/bpftool" in u.files:
        entries = read_cpio(build_archive(u.files["/bin/busybox"], "spec", dict(u.files),
                                          links=u.links, data=u.data))
        # bpftool's libraries come along (libelf at least), the applets are symlinks
        assert any(name.endswith("/libelf.so.1") for name in entries)
        mode, target, _ = entries["bin/sh"]
        assert stat.S_ISLNK(mode) and target == b"/bin/busybox"


def test_no_busybox_or_bpftool_on_the_host_says_what_the_guest_lacks(monkeypatch):
    monkeypatch.setattr(userland, "BUSYBOX", ())
    monkeypatch.setattr(userland, "BPFTOOL", ())
    monkeypatch.setattr(userland.shutil, "which", lambda name: None)
    u = userland.guest_userland()
    assert "/bin/sh" not in u.links and "/usr/sbin/bpftool" not in u.files
    assert u.missing == (
        "no busybox on the host (apt-get install busybox-static): the guest has no shell",
        "no bpftool on the host (apt-get install bpftool): scxmaps will say so in the guest")
    assert "/usr/local/bin/scx" in u.data  # the helpers still go in


def test_the_guest_spec_carries_the_shell_hold():
    spec = RunSpec(name="s", scheduler="scx_simple", topology=parse_topology("tiny-1llc"),
                   workload=())
    text = render_guest_spec(spec, "/usr/bin/scx_simple", [], shell_hold_ms=1234)
    g = parse_guest_spec(text)
    assert g.shell_hold_ms == 1234 and g.workload == ()
    assert "shell_hold_ms" not in render_guest_spec(spec, None, [])
