"""A synthetic guest RAM image laid out with the real kernel's BTF offsets: run queues,
current tasks, scx_root with its per-CPU event stats and exit info, page_offset_base and
__per_cpu_offset - what the monitor reads, at the addresses the kernel would use.
Used by tests/test_monitor.py and benchmarks/bench_monitor.py."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ktstr_vmm.engine.base import RamRegion
from ktstr_vmm.guest.messages import RamRange, SysRdy
from ktstr_vmm.introspect.btf import Btf

POB = 0xFF11000000000000
KBASE = 0xFFFFFFFF80000000
SYM_BASE = 0x100000
RQ_BASE = 0x400000
RQ_STRIDE = 0x10000
TASK_BASE = 0x1000000
SCH = 0x1F00000
EXIT_INFO = 0x1F10000
STRINGS = 0x1F20000
SIZE = 0x2000000

SYMS = ("page_offset_base", "__per_cpu_offset", "runqueues", "scx_root",
        "scx_enable_state_var", "ext_sched_class", "fair_sched_class", "idle_sched_class",
        "rt_sched_class", "dl_sched_class", "stop_sched_class", "nr_cpu_ids", "jiffies")


@dataclass
class Image:
    btf: Btf
    ncpus: int
    buf: bytearray
    kallsyms: dict[str, int]

    def m(self, s: str, path: str) -> int:
        return self.btf.member(s, path).offset

    def put(self, pa: int, fmt: str, *v) -> None:
        struct.pack_into("<" + fmt, self.buf, pa, *v)

    def rq_pa(self, cpu: int) -> int:
        return RQ_BASE + cpu * RQ_STRIDE

    def task_pa(self, cpu: int) -> int:
        return TASK_BASE + cpu * 0x4000

    def regions(self) -> list[RamRegion]:
        return [RamRegion(0, len(self.buf), memoryview(self.buf))]

    def sysrdy(self, kallsyms: dict[str, int] | None = None) -> SysRdy:
        cpus = tuple(range(self.ncpus))
        return SysRdy(release="7.3.4", online=cpus, nodes=(cpus,), llcs=(cpus,),
                      siblings=tuple((c,) for c in cpus), ram=(RamRange(0, SIZE - 1),),
                      kallsyms=self.kallsyms if kallsyms is None else kallsyms)

    def set_cpu(self, cpu: int, *, nr_running: int, scx_nr: int = 0, dsq: int = 0,
                clock: int, pid: int, comm: str = "spin", cls: str = "ext_sched_class") -> None:
        rq, t = self.rq_pa(cpu), self.task_pa(cpu)
        self.put(rq + self.m("rq", "nr_running"), "I", nr_running)
        self.put(rq + self.m("rq", "scx.nr_running"), "I", scx_nr)
        self.put(rq + self.m("rq", "scx.local_dsq.nr"), "I", dsq)
        self.put(rq + self.m("rq", "clock"), "Q", clock)
        self.put(rq + self.m("rq", "curr"), "Q", POB + t)
        # empty lists point at themselves
        for path in ("scx.runnable_list", "scx.local_dsq.list"):
            head = POB + rq + self.m("rq", path)
            self.put(rq + self.m("rq", path), "QQ", head, head)
        self.put(t + self.m("task_struct", "pid"), "i", pid)
        self.put(t + self.m("task_struct", "tgid"), "i", pid)
        self.buf[t + self.m("task_struct", "comm"):t + self.m("task_struct", "comm") + 16] = \
            comm.encode()[:15].ljust(16, b"\0")
        self.put(t + self.m("task_struct", "sched_class"), "Q", self.kallsyms[cls])

    def set_scx(self, *, state: int = 1, exit_kind: int = 0, events: int = 0,
                reason: str = "", msg: str = "") -> None:
        self.put(self.kallsyms["scx_enable_state_var"] - KBASE, "I", state)
        self.put(self.kallsyms["scx_root"] - KBASE, "Q", POB + SCH)
        self.put(SCH + self.m("scx_sched", "exit_kind"), "I", exit_kind)
        self.put(SCH + self.m("scx_sched", "exit_info"), "Q", POB + EXIT_INFO)
        pcpu = self.kallsyms["runqueues"] + 0x8000
        self.put(SCH + self.m("scx_sched", "pcpu"), "Q", pcpu)
        ev = self.m("scx_sched_pcpu", "event_stats")
        n = len(self.btf.struct("scx_event_stats").members)
        for c in range(self.ncpus):
            self.put(self.rq_pa(c) + 0x8000 + ev, f"{n}q", *([events] * n))
        for off, text in ((self.m("scx_exit_info", "reason"), reason),
                          (self.m("scx_exit_info", "msg"), msg)):
            where = STRINGS + off * 16
            self.buf[where:where + len(text) + 1] = text.encode() + b"\0"
            self.put(EXIT_INFO + off, "Q", POB + where)


def build(btf: Btf, ncpus: int) -> Image:
    syms = {n: KBASE + SYM_BASE + i * 0x1000 for i, n in enumerate(SYMS)}
    img = Image(btf, ncpus, bytearray(SIZE), syms)
    img.put(syms["page_offset_base"] - KBASE, "Q", POB)
    for c in range(ncpus):
        img.put(syms["__per_cpu_offset"] - KBASE + 8 * c, "Q",
                (POB + img.rq_pa(c) - syms["runqueues"]) & (2**64 - 1))
        img.set_cpu(c, nr_running=1, scx_nr=1, clock=1_000_000 + c, pid=100 + c)
    return img
