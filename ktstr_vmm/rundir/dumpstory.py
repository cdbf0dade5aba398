"""A failure dump read as a story: what exited and why, who triggered it, who waited longest
and where; then one row per CPU and one per dispatch queue with its tasks.

`story(report)` takes one FailureDumpReport as JSON (a `single` dump, or one snapshot of a
`dual` one; ktstr_vmm.dumps validated it) and returns a DumpStory the TUI and `ktstr show`
render. Pure and tolerant: any field may be missing (absent means "not captured"); nothing
here raises on a dump the reader accepted.

Tasks in DSQs are listed by kernel address (`task_kvas`); a task enrichment carries its
address in `kva` (dumps written since this field exists). For older dumps the addresses of
a run queue's `runnable_task_kvas` are matched to the enrichments with the same CPU in
order, and whatever cannot be matched is shown by address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..introspect.scx import EXIT_KIND_VALUES, exit_kind_name

SCX_DSQ_GLOBAL = 0x8000000000000001
SCX_DSQ_LOCAL = 0x8000000000000002
SCX_DSQ_BYPASS = 0x8000000000000003
DSQ_NAMES = {SCX_DSQ_GLOBAL: "SCX_DSQ_GLOBAL", SCX_DSQ_LOCAL: "SCX_DSQ_LOCAL",
             SCX_DSQ_BYPASS: "SCX_DSQ_BYPASS"}

# The kernel's words for an exit kind (scx_exit_reason() in kernel/sched/ext.c), for a
# dump whose exit_info reason could not be read.
EXIT_REASONS = {EXIT_KIND_VALUES[name]: words for name, words in (
    ("SCX_EXIT_UNREG", "unregistered from user space"),
    ("SCX_EXIT_UNREG_BPF", "unregistered from BPF"),
    ("SCX_EXIT_UNREG_KERN", "unregistered from the main kernel"),
    ("SCX_EXIT_SYSRQ", "disabled by sysrq-S"), ("SCX_EXIT_ERROR", "runtime error"),
    ("SCX_EXIT_ERROR_BPF", "scx_bpf_error"), ("SCX_EXIT_ERROR_STALL", "runnable task stall"))}

_TRIGGER = re.compile(r"(?P<task>\S+\[\d+\]) triggered exit kind (?P<kind>\d+)"
                      r"(?: on CPU (?P<cpu>\d+))?")
_TASK_IN_MSG = re.compile(r"(?P<comm>\S+)\[(?P<pid>\d+)\] failed to run for (?P<secs>[\d.]+)s")


@dataclass(frozen=True)
class Task:
    pid: int
    comm: str
    cpu: int | None = None
    waited_ms: int | None = None     # runnable_for_ms: on a runnable list this long
    sched_class: str = ""
    kva: int | None = None

    @property
    def label(self) -> str:
        return f"{self.comm}[{self.pid}]"

    @property
    def waited(self) -> str:
        return f"{self.waited_ms} ms" if self.waited_ms is not None else ""


@dataclass(frozen=True)
class CpuRow:
    cpu: int
    current: str              # "spin-1[117]" / "swapper/2[0]"
    current_class: str        # "ext", "idle", "rt", ...
    nr_running: int | None    # sched_ext tasks on the CPU (rq->scx.nr_running)
    rq_nr_running: int | None  # tasks of every class (rq->nr_running)
    local_dsq: int | None     # local DSQ depth
    longest: Task | None      # the runnable task on this CPU that waited longest
    rq_clock_ns: int | None


@dataclass(frozen=True)
class DsqRow:
    name: str                 # "local cpu 0", "bypass cpu 2", "global node 0", "user 0x0"
    dsq_id: str               # "SCX_DSQ_LOCAL", "0x0"
    nr: int
    seq: int | None
    tasks: tuple[Task | str, ...]  # a Task, or "0xffff..." when unresolved
    truncated: bool = False


@dataclass(frozen=True)
class DumpStory:
    exit_kind: int | None
    exit_name: str            # "SCX_EXIT_ERROR_STALL (1026)", "" when not captured
    reason: str               # "runnable task stall"
    message: str              # the scheduler's / kernel's exit message
    trigger: str | None       # "kworker/u16:1[49] on CPU 0" (from the sched_ext dump)
    stalled: Task | None      # the task a runnable-task stall names
    longest: Task | None      # the task that waited longest anywhere
    cpus: tuple[CpuRow, ...]
    dsqs: tuple[DsqRow, ...]
    notes: tuple[str, ...]    # drained queues, bypass, when each piece was read
    placeholder: str | None = None  # why nothing was captured

    def summary_lines(self) -> list[str]:
        """The story's first screen: a few plain lines."""
        if self.placeholder is not None:
            return [f"no scheduler state was captured: {self.placeholder}"]
        out = []
        if self.exit_name or self.reason or self.message:
            what = ": ".join(p for p in (self.reason, self.message) if p)
            out.append(f"exit      {self.exit_name}{'  ' if self.exit_name and what else ''}"
                       f"{what}".rstrip())
        if self.trigger:
            out.append(f"trigger   {self.trigger}")
        if self.stalled is not None:
            where = f" on CPU {self.stalled.cpu}" if self.stalled.cpu is not None else ""
            waited = f" waited {self.stalled.waited}" if self.stalled.waited else ""
            out.append(f"stalled   {self.stalled.label}{waited}{where}")
        if self.longest is not None and (self.stalled is None
                                         or self.longest.pid != self.stalled.pid):
            where = f" on CPU {self.longest.cpu}" if self.longest.cpu is not None else ""
            out.append(f"longest   {self.longest.label} waited {self.longest.waited}{where}"
                       f"{self._queue_of(self.longest)}")
        elif self.longest is not None:
            out[-1] += self._queue_of(self.longest)
        busy = [c for c in self.cpus if (c.rq_nr_running or 0) > 0 and c.current_class == "idle"]
        if busy:
            out.append("idle      " + ", ".join(f"CPU {c.cpu}" for c in busy)
                       + " idle with runnable tasks ("
                       + ", ".join(str(c.rq_nr_running) for c in busy) + ")")
        out += [f"note      {n}" for n in self.notes]
        return out

    def _queue_of(self, t: Task) -> str:
        for d in self.dsqs:
            if any(isinstance(x, Task) and x.pid == t.pid for x in d.tasks):
                return f", queued in {d.name}"
        return ""


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _class(name: str) -> str:
    return name.removesuffix("_sched_class") if name else ""


def dsq_name(origin: str, dsq_id: int | None) -> str:
    """How every view names a DSQ: its origin ("local cpu 0", "bypass cpu 2", "global node
    0"), a user DSQ by its id ("user 0x0")."""
    return f"user {dsq_id:#x}" if origin == "user" and dsq_id is not None else origin


def dsq_id_name(dsq_id: int | None) -> str:
    if dsq_id is None:
        return "?"
    return DSQ_NAMES.get(dsq_id, f"{dsq_id:#x}")


def _tasks(report: dict[str, Any]) -> tuple[list[Task], dict[int, Task]]:
    tasks, by_kva = [], {}
    for t in _list(report.get("task_enrichments")):
        if not isinstance(t, dict) or _int(t.get("pid")) is None:
            continue
        task = Task(pid=t["pid"], comm=_str(t.get("comm")) or "?", cpu=_int(t.get("cpu")),
                    waited_ms=_int(t.get("runnable_for_ms")),
                    sched_class=_class(_str(t.get("sched_class"))), kva=_int(t.get("kva")))
        tasks.append(task)
        if task.kva is not None:
            by_kva[task.kva] = task
    if not by_kva:  # older dumps: a CPU's runnable list in the order its tasks were read
        for rq in _list(report.get("rq_scx_states")):
            if not isinstance(rq, dict):
                continue
            cpu = _int(rq.get("cpu"))
            waiting = [t for t in tasks if t.cpu == cpu and t.waited_ms is not None]
            kvas = [k for k in _list(rq.get("runnable_task_kvas")) if _int(k) is not None]
            if len(waiting) == len(kvas):
                by_kva.update(zip(kvas, waiting, strict=True))
    return tasks, by_kva


def story(report: dict[str, Any], *, sched_ext_dump: str = "",
          globals_last_t: float | None = None) -> DumpStory:
    """The story of one dump. `sched_ext_dump`: the run's sched_ext dump text (names the
    triggering task and CPU); `globals_last_t`: when the live BPF globals were last read
    (bpf.jsonl's `t`, seconds on the monitor's clock), to say which is newer."""
    if report.get("is_placeholder"):
        why = next((_str(v) for k, v in report.items() if k.endswith("_unavailable") and v),
                   _str(report.get("reason")))
        return DumpStory(None, "", "", "", None, None, None, (), (), (), placeholder=why or "?")
    sched = report.get("scx_sched_state") if isinstance(report.get("scx_sched_state"), dict) \
        else {}
    kind = _int(sched.get("exit_kind"))
    exit_name = f"{exit_kind_name(kind)} ({kind})" if kind is not None else ""
    reason, message = _str(sched.get("exit_reason")), _str(sched.get("exit_msg"))
    if not reason and kind is not None:
        reason = EXIT_REASONS.get(kind, "")
    tasks, by_kva = _tasks(report)
    by_pid = {t.pid: t for t in tasks}

    trigger = None
    m = _TRIGGER.search(sched_ext_dump)
    if m:
        trigger = m.group("task") + (f" on CPU {m.group('cpu')}" if m.group("cpu") else "")
    stalled = None
    m = _TASK_IN_MSG.search(message)
    if m:
        pid = int(m.group("pid"))
        stalled = by_pid.get(pid) or Task(pid=pid, comm=m.group("comm"),
                                          waited_ms=round(float(m.group("secs")) * 1000))

    cpus = []
    for rq in _list(report.get("rq_scx_states")):
        if not isinstance(rq, dict) or _int(rq.get("cpu")) is None:
            continue
        cpu = rq["cpu"]
        pid = _int(rq.get("curr_pid"))
        current = f"{_str(rq.get('curr_comm')) or '?'}[{pid}]" if pid is not None else "?"
        waiting = [t for t in tasks if t.cpu == cpu and t.waited_ms is not None
                   and t.pid != pid]
        longest = max(waiting, key=lambda t: t.waited_ms or 0, default=None)
        cpus.append(CpuRow(cpu=cpu, current=current,
                           current_class=_class(_str(rq.get("curr_class"))),
                           nr_running=_int(rq.get("nr_running")),
                           rq_nr_running=_int(rq.get("rq_nr_running")),
                           local_dsq=_int(rq.get("local_dsq_depth")), longest=longest,
                           rq_clock_ns=_int(rq.get("rq_clock"))))

    dsqs = []
    for d in _list(report.get("dsq_states")):
        if not isinstance(d, dict):
            continue
        did = _int(d.get("id"))
        origin = _str(d.get("origin")) or "?"
        name = dsq_name(origin, did)
        queued = tuple(by_kva.get(k) or f"{k:#x}" for k in _list(d.get("task_kvas"))
                       if _int(k) is not None)
        dsqs.append(DsqRow(name=name, dsq_id=dsq_id_name(did), nr=_int(d.get("nr")) or 0,
                           seq=_int(d.get("seq")), tasks=queued,
                           truncated=bool(d.get("truncated"))))

    waited = [t for t in tasks if t.waited_ms is not None]
    longest = max(waited, key=lambda t: t.waited_ms or 0, default=None)
    notes = _notes(report, sched, dsqs, globals_last_t)
    return DumpStory(kind, exit_name, reason, message, trigger, stalled, longest,
                     tuple(cpus), tuple(dsqs), tuple(notes))


def _notes(report: dict[str, Any], sched: dict[str, Any], dsqs: list[DsqRow],
           globals_last_t: float | None) -> list[str]:
    notes = []
    bypass = [d for d in dsqs if d.name.startswith("bypass")]
    queued_in_bypass = sum(d.nr for d in bypass)
    if queued_in_bypass or (_int(sched.get("bypass_depth")) or 0) > 0:
        used = [d.name for d in dsqs if not d.name.startswith(("bypass", "local")) and d.nr == 0
                and (d.seq or 0) > 0]
        notes.append(
            "the kernel's disable path put the scheduler in bypass mode before this capture "
            f"(bypass_depth={_int(sched.get('bypass_depth')) or 0}) and moved every runnable "
            f"task to the per-CPU bypass queues ({queued_in_bypass} task"
            f"{'s' if queued_in_bypass != 1 else ''} there)"
            + (f"; {', '.join(used)} read empty although used (seq > 0): the kernel drained "
               "them, the tasks they held are in the bypass queues" if used else ""))
    timeline = [e for e in _list(report.get("event_counter_timeline")) if isinstance(e, dict)]
    last_ms = _int(timeline[-1].get("elapsed_ms")) if timeline else None
    when = f" (after the monitor's sample at {last_ms / 1000:.1f} s)" if last_ms is not None else ""
    notes.append(f"run queues, DSQs, tasks and BPF maps were read from the frozen guest at the "
                 f"exit{when}")
    if globals_last_t is not None:
        later = last_ms is not None and globals_last_t * 1000 < last_ms
        notes.append(f"the live BPF globals were last read at {globals_last_t:.1f} s"
                     + (", before the exit: where they differ from the dump's maps, the dump "
                        "is newer" if later or last_ms is None else ""))
    if report.get("dump_truncated_at_us") is not None:
        notes.append(f"the capture stopped early at {report['dump_truncated_at_us']} us "
                     "to bound the freeze: some state is missing")
    return notes
