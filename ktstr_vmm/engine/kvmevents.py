"""What the VMM's event ring carries (struct kt_event) as Python values, and how a crash
is described to a person: what happened, on which vCPU, where, and the registers."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

# KT_EV_<suffix> -> name. The numbers come from ktvmm.h through the compiled module
# (kind_names), never re-typed here; the stop kinds end the VM, the others are informational.
_EVENT_SUFFIXES = {"EXIT_PORT": "exit-port", "HLT": "halted", "SHUTDOWN": "triple fault",
                   "FAIL_ENTRY": "entry failure", "INTERNAL_ERROR": "internal error",
                   "RESET": "reset", "POWEROFF": "poweroff", "KILLED": "killed",
                   "REPORT": "report", "PAUSED": "paused", "RESUMED": "resumed",
                   "ERROR": "vcpu error", "UNHANDLED": "unhandled exit"}
STOP_NAMES = frozenset(set(_EVENT_SUFFIXES.values()) - {"report", "paused", "resumed"})
CRASH_NAMES = {"triple fault", "entry failure", "internal error", "vcpu error", "unhandled exit"}


@dataclass(frozen=True)
class KvmEvent:
    """One entry of the VMM's event ring (registers are those of `vcpu` at the time)."""

    kind: str
    vcpu: int
    code: int
    ns: int  # CLOCK_MONOTONIC, comparable with time.monotonic_ns()
    rip: int = 0
    rsp: int = 0
    cs: int = 0
    cr0: int = 0
    cr3: int = 0
    cr4: int = 0
    efer: int = 0
    regs: tuple[int, int, int, int] = (0, 0, 0, 0)  # rax rbx rcx rdx
    insn: bytes = b""

    def describe(self) -> str:
        """One line a person can act on (used for crash reports)."""
        where = f"vCPU {self.vcpu} at RIP {self.rip:#x} (CS {self.cs:#06x})"
        if self.kind == "internal error":
            what = "emulation failure" if self.code == 1 else f"internal error {self.code}"
        elif self.kind == "entry failure":
            what = f"VM entry failure, hardware reason {self.code:#x}"
        elif self.kind == "vcpu error":
            what = f"KVM_RUN failed: {os.strerror(self.code)}"
        elif self.kind == "unhandled exit":
            what = f"unhandled KVM exit reason {self.code}"
        else:
            what = self.kind
        text = f"{what}: {where}"
        if self.insn:
            text += f", bytes {self.insn[:8].hex(' ')}"
        return text

    def registers(self) -> str:
        rax, rbx, rcx, rdx = self.regs
        return (f"RIP={self.rip:#018x} RSP={self.rsp:#018x} CS={self.cs:#06x}\n"
                f"RAX={rax:#018x} RBX={rbx:#018x} RCX={rcx:#018x} RDX={rdx:#018x}\n"
                f"CR0={self.cr0:#x} CR3={self.cr3:#x} CR4={self.cr4:#x} EFER={self.efer:#x}")


@functools.cache
def kind_names() -> dict[int, str]:
    """KT_EV_* number -> name, read from the compiled VMM (ktvmm.h is the one source)."""
    from .. import _kvm  # the cffi extension stays optional: only decoding real events needs it
    return {getattr(_kvm.lib, f"KT_EV_{suffix}"): name for suffix, name in _EVENT_SUFFIXES.items()}


def event_from_c(ev) -> KvmEvent:
    """A `struct kt_event` (cffi) -> KvmEvent."""
    return KvmEvent(kind=kind_names().get(ev.kind, f"event {ev.kind}"), vcpu=ev.vcpu,
                    code=ev.code, ns=ev.ns, rip=ev.rip, rsp=ev.rsp, cs=ev.cs, cr0=ev.cr0,
                    cr3=ev.cr3, cr4=ev.cr4, efer=ev.efer,
                    regs=(ev.rax, ev.rbx, ev.rcx, ev.rdx), insn=bytes(ev.insn[0:ev.insn_len]))
