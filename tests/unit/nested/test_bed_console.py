"""What the nested bed says when L1 dies: the crash's reason, not only its last frames."""

from ktstr_vmm.nested.bed import _last_lines

PANIC = """\
[    0.000000] Linux version 7.3.4+deb13-cloud-amd64
[    0.058000] Kernel panic - not syncing: Attempted to kill the idle task!
[    0.058100] CPU: 0 UID: 0 PID: 0 Comm: swapper Not tainted 7.3.4+deb13-cloud-amd64
[    0.058200] RIP: 0010:start_kernel+0x61/0x9c0
[    0.059000] Call Trace:
[    0.059100]  <TASK>
[    0.060000]  x86_64_start_kernel+0x12f/0x130
[    0.060000]  common_startup_64+0x13e/0x151
[    0.060000]  </TASK>
"""


def test_a_panicking_l1_is_named_by_its_panic_line_before_the_stack_tail(tmp_path):
    console = tmp_path / "l1-console.log"
    console.write_text(PANIC)
    assert _last_lines(console) == (
        "[    0.058000] Kernel panic - not syncing: Attempted to kill the idle task! | "
        "[    0.058200] RIP: 0010:start_kernel+0x61/0x9c0 | ... | "
        "[    0.060000]  x86_64_start_kernel+0x12f/0x130 | "
        "[    0.060000]  common_startup_64+0x13e/0x151 | [    0.060000]  </TASK>")


def test_a_quiet_console_gives_its_last_lines(tmp_path):
    console = tmp_path / "l1-console.log"
    console.write_text("one\ntwo\nthree\nfour\n")
    assert _last_lines(console) == "two | three | four"
    assert _last_lines(tmp_path / "absent.log") == ""
