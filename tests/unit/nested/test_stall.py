"""The nested bed's stall tools against a real QEMU (no guest: paused before it starts):
its human monitor answers, a key press goes through, and the summary names what a user
needs to see - QEMU's state, where L1's vCPU is, and the APIC's pending interrupts."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from ktstr_vmm.nested.stall import StallReport, SymbolMap, cpu_seconds, diagnose, hmp, poke

QEMU = shutil.which("qemu-system-x86_64")


@pytest.fixture
def qemu(tmp_path):
    if QEMU is None:
        pytest.skip("no qemu-system-x86_64")
    sock = tmp_path / "mon.sock"
    proc = subprocess.Popen([QEMU, "-S", "-nodefaults", "-display", "none", "-machine", "pc",
                             "-accel", "tcg", "-monitor", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while not sock.exists():  # QEMU creates the socket before it runs
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        yield proc, sock
    finally:
        proc.kill()
        proc.wait()


def test_monitor_answers_and_a_key_press_goes_through(qemu):
    proc, sock = qemu
    assert hmp(sock, "info status") == "VM status: paused (prelaunch)"
    assert poke(sock)
    assert "EIP=0000fff0" in hmp(sock, "info registers")  # the reset vector
    report = diagnose(proc.pid, sock, SymbolMap({}), samples=2, gap_s=0.0)
    text = report.summary()
    assert text.startswith("VM status: paused (prelaunch); ")
    assert "L1 at 0xfff0" in text
    assert "APIC IRR (none) ISR (none)" in text  # from 'info lapic' of the reset APIC


def test_a_monitor_that_is_not_there_is_no_answer(tmp_path):
    assert hmp(tmp_path / "absent.sock", "info status") is None
    assert not poke(tmp_path / "absent.sock")


def test_addresses_are_named_from_the_kernels_symbols():
    m = SymbolMap({"cpu_idle_poll": 0xffffffff82156300, "do_idle": 0xffffffff82156500,
                   "user_thing": 0x400000})
    assert m.name(0xffffffff821563b1) == "cpu_idle_poll+0xb1"
    assert m.name(0xffffffffc0123456) == "0xffffffffc0123456 (a module)"
    assert m.name(0xffffffff80000000) == "0xffffffff80000000"  # before every symbol
    assert m.name(0x401000) == "0x401000"                      # user space is not named


def test_the_summary_says_an_undelivered_timer_is_pending():
    lapic = ("LVTT\t 0x000000ec active-hi edge one-shot Fixed  (vec 236)\n"
             "ISR\t (none)\nIRR\t 236 \n\nAPR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10")
    r = StallReport(cpu_s=2.5, window_s=4.0, status="VM status: running",
                    where=["cpu_idle_poll+0xb1", "cpu_idle_poll+0xb1"], registers="",
                    lapic=lapic)
    assert r.summary() == ("VM status: running; QEMU used 2.5 s of CPU in 4 s; "
                           "L1 at cpu_idle_poll+0xb1; APIC IRR 236 ISR (none)")
    idle = StallReport(cpu_s=0.0, window_s=5.0, status="VM status: running", where=[],
                       registers="")
    assert idle.summary() == ("VM status: running; QEMU used no CPU (L1 halted or QEMU "
                              "blocked); L1 at no answer from QEMU's monitor")


def test_cpu_time_of_this_process_is_read():
    assert cpu_seconds(os.getpid()) > 0
    assert cpu_seconds(1 << 30) is None
