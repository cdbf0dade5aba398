"""Guest state -> RunOutcome -> verdict: the user-visible reasons of real failure shapes."""


from support import DATA, REPO

from ktstr_vmm.evaluate.judge import evaluate
from ktstr_vmm.evaluate.types import Timings
from ktstr_vmm.guest import messages as gm
from ktstr_vmm.guest.wire import MsgType
from ktstr_vmm.run.outcome import build_outcome, sched_exit_from
from ktstr_vmm.run.recorder import GuestState

DATA = DATA / "runs"


def _worker(i):
    return gm.WorkerStats(group=0, kind="spin", index=i, pid=100 + i, cpu_ns=1_000_000_000,
                          wall_ns=1_500_000_000, iterations=1000, migrations=1, cpus=(i,),
                          max_gap_ns=21_000_000)


def _outcome(state, console="", sched_log=""):
    return build_outcome(test="t", scheduler="scx_ktstr", topology="1n2l2c1t", state=state,
                         sched_log=sched_log, console=console, timed_out=False,
                         timings=Timings(elapsed_s=20, vm_timeout_s=70, duration_s=5),
                         expect_err=False)


def test_injected_error_mid_run_names_the_kernels_exit_text():
    console = (DATA / "error-after.console.log").read_text()
    st = GuestState()
    st.lifecycle += [gm.Lifecycle("scx_enabled", 18000), gm.Lifecycle("workload_started", 18100)]
    st.sched_exit = gm.SchedExit("scx_disabled", "disabling", None, None,
                                 'sched_ext: BPF scheduler "ktstr" enabled', 19400)
    st.test_result = gm.TestResult("/usr/bin/scx_ktstr", 1300, tuple(_worker(i) for i in range(4)))
    se = sched_exit_from(st, console)
    assert se.kind == 1025 and se.scheduler_name == "ktstr"
    assert se.message == "scx_ktstr.bpf.c:114: scx_ktstr: injected error after 1500ms (--error-after)"
    v = evaluate(_outcome(st, console))
    assert v.kind == "fail"
    assert ("  scheduler process died unexpectedly during the workload (1.3s into test): "
            "scx_ktstr.bpf.c:114: scx_ktstr: injected error after 1500ms (--error-after)") in v.message
    assert "--- stats ---\n4 workers, 4 cpus, 4 migrations, worst_spread=0.0%, worst_gap=21ms" in v.message


def test_scheduler_that_never_enabled_is_a_scheduler_exit_not_a_workload_failure():
    st = GuestState()
    st.sysrdy = object()  # reached init
    st.lifecycle.append(gm.Lifecycle("sched_started", 14000, pid=120))
    st.sched_exit = gm.SchedExit("process_exited", "disabled", 1, None, "", 16000)
    st.test_result = gm.TestResult("/usr/bin/scx_qmap", 0, (), ("no workload: the scheduler did not enable sched_ext",))
    v = evaluate(_outcome(st, sched_log="libbpf: prog 'qmap_dequeue': BPF program load failed: -EACCES\n"))
    assert v.reason == "scheduler exited: exit status 1 before sched_ext was enabled (see the scheduler log)"
    assert "ktstr_test 't' [sched=scx_ktstr] [topo=1n2l2c1t] scheduler exited: exit status 1" in v.message
    assert "--- scheduler log ---\nlibbpf: prog 'qmap_dequeue': BPF program load failed: -EACCES" in v.message


def test_a_scheduler_that_never_enabled_sched_ext_fails_and_says_so():
    """The agent's enable deadline passed with the scheduler still alive and sched_ext
    disabled: no workload ran, and an empty scenario must not pass (seen in nested KVM
    runs where the verifier took longer than the deadline)."""
    st = GuestState()
    st.sysrdy = object()
    st.lifecycle += [gm.Lifecycle("sched_started", 14000, pid=120),
                     gm.Lifecycle("sched_enable_timeout", 44000, pid=120,
                                  detail="state 'disabled' after 30000 ms")]
    st.test_result = gm.TestResult("/usr/bin/scx_simple", 0, (),
                                   ("no workload: the scheduler did not enable sched_ext",))
    v = evaluate(_outcome(st))
    assert v.kind == "fail"
    assert ("the scheduler never enabled sched_ext (state 'disabled' after 30000 ms); "
            "no workload ran") in v.message


def test_clean_pass():
    st = GuestState()
    st.lifecycle += [gm.Lifecycle("scx_enabled", 1), gm.Lifecycle("workload_started", 2)]
    st.test_result = gm.TestResult("/usr/bin/scx_simple", 3000, tuple(_worker(i) for i in range(2)))
    v = evaluate(_outcome(st))
    assert v.kind == "pass" and v.message == ""
    assert v.sections["stats"].startswith("2 workers, 2 cpus, 2 migrations")


def test_agent_crash_text_becomes_guest_crashed():
    st = GuestState()
    st.crash.append("ktstr-init: cannot mount /proc: ENOMEM")
    v = evaluate(_outcome(st))
    assert v.reason.startswith("guest crashed:")
    assert "cannot mount /proc" in v.message
    assert MsgType.Crash  # the frame type these come from


def test_stall_detail_says_the_kernels_watchdog_disabled_the_scheduler():
    """A runnable-task stall leaves the scheduler process alive: the kernel's watchdog
    disabled it, and the detail says so (the demo store's recorded stall console)."""
    run = next((REPO / "assets" / "demo-store" / "runs")
               .glob("*-demo_stall-*"))
    console = (run / "console.log").read_text()
    st = GuestState()
    st.lifecycle += [gm.Lifecycle("scx_enabled", 3000), gm.Lifecycle("workload_started", 3100)]
    st.sched_exit = gm.SchedExit("scx_disabled", "disabled", None, None, "", 8000)
    st.test_result = gm.TestResult("/usr/bin/scx_ktstr", 4900, tuple(_worker(i) for i in range(4)))
    v = evaluate(_outcome(st, console))
    assert ("  the kernel's watchdog disabled the scheduler during the workload (4.9s into "
            "test): runnable task stall: spin-3[120] failed to run for 3.544s") in v.message
    assert "scheduler process died" not in v.message
