"""What a stalled L1 was doing: QEMU's human monitor (HMP) over a unix socket, QEMU's CPU
time from /proc, and L1's instruction pointer named from the kernel's System.map (L1 boots
with `nokaslr`, so the map's addresses are L1's).

Why a stalled L1 can be woken: measured on a stalled L1 (QEMU 10, TCG, one vCPU, a busy
2-core host), its local APIC held the timer vector (236) in IRR, nothing in ISR, PPR 0x10,
and L1 was in its idle loop with interrupts enabled - yet the interrupt was never taken.
QEMU had dropped the CPU's interrupt request while the vector stayed pending (the kind of
TCG SVM interrupt bookkeeping bug docs/kvm-engine.md describes); with a one-shot timer
nothing raised it again, so L1 slept forever. Any new interrupt re-evaluates the APIC:
`poke` presses a key on L1's i8042 (IRQ 1), whose interrupt re-raises the request, and the
pending timer is delivered with it. In L1 the key goes to a VT nobody reads.

Used by the bed when L1's console has been silent for longer than its init's heartbeat
allows (bed.POKE_S, bed.STALL_S): the answer goes into the error the user (or the test)
sees.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROMPT = b"(qemu) "
RIP_RE = re.compile(r"\b[RE]IP=([0-9a-fA-F]{8,16})\b")
HALTED_RE = re.compile(r"\bHLT=(\d)")


def hmp(sock_path: Path, command: str, timeout_s: float = 10.0) -> str | None:
    """One HMP command's reply (None when the monitor does not answer)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(sock_path))
        buf = b""
        while not buf.endswith(PROMPT):          # the banner, then the first prompt
            chunk = s.recv(4096)
            if not chunk:
                return None
            buf += chunk
        s.sendall(command.encode() + b"\n")
        buf = b""
        while not buf.endswith(PROMPT):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        text = buf.decode("utf-8", "replace").replace("\r", "")
        # the monitor echoes the command line first; the reply ends with the next prompt
        lines = text.split("\n")[1:]
        return "\n".join(lines).removesuffix(PROMPT.decode()).strip()
    return None


def poke(sock_path: Path) -> bool:
    """A key press on L1's keyboard: an interrupt that makes QEMU re-evaluate L1's APIC.
    False when the monitor did not answer."""
    return hmp(sock_path, "sendkey shift") is not None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SymbolMap:
    """Nearest preceding symbol of an address, from name -> address (the kernel's symbols:
    a real System.map, its ELF symtab or the kallsyms earlier guests of this build sent)."""

    def __init__(self, symbols: Mapping[str, int]):
        pairs = sorted((a, n) for n, a in symbols.items() if a >= 0xffffffff80000000)
        self._addrs = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def name(self, addr: int) -> str:
        if addr >= 0xffffffffc0000000:
            return f"{addr:#x} (a module)"
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0 or addr - self._addrs[i] > 1 << 16:
            return f"{addr:#x}"
        return f"{self._names[i]}+{addr - self._addrs[i]:#x}"


@dataclass(frozen=True)
class StallReport:
    cpu_s: float | None          # QEMU CPU seconds over the sample window
    window_s: float
    status: str                  # HMP 'info status'
    where: list[str]             # named RIPs, one per sample
    registers: str               # the last 'info registers' in full
    lapic: str = ""              # HMP 'info lapic' (IRR/ISR: a pending, undelivered timer)

    def summary(self) -> str:
        spin = ("QEMU used no CPU (L1 halted or QEMU blocked)" if self.cpu_s is not None
                and self.cpu_s < 0.05 * self.window_s else
                f"QEMU used {self.cpu_s:.1f} s of CPU in {self.window_s:.0f} s"
                if self.cpu_s is not None else "QEMU's CPU time unknown")
        seen = ", ".join(dict.fromkeys(self.where)) or "no answer from QEMU's monitor"
        irr = re.search(r"^IRR\s+(.*)$", self.lapic, re.M)
        isr = re.search(r"^ISR\s+(.*)$", self.lapic, re.M)
        apic = (f"; APIC IRR {irr.group(1).strip() or '(none)'} ISR {isr.group(1).strip()}"
                if irr and isr else "")
        return f"{self.status or 'status unknown'}; {spin}; L1 at {seen}{apic}"


def diagnose(pid: int, monitor: Path, symbols: SymbolMap, samples: int = 5,
             gap_s: float = 1.0) -> StallReport:
    """Sample L1 a few times: where its vCPU is and whether QEMU is burning CPU."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    where: list[str] = []
    regs = ""
    for _ in range(samples):
        regs = hmp(monitor, "info registers") or regs
        m = RIP_RE.search(regs)
        if m:
            h = HALTED_RE.search(regs)
            where.append(symbols.name(int(m.group(1), 16))
                         + (" (halted)" if h and h.group(1) == "1" else ""))
        time.sleep(gap_s)
    c1, window = cpu_seconds(pid), time.monotonic() - t0
    used = c1 - c0 if c0 is not None and c1 is not None else None
    return StallReport(used, window, hmp(monitor, "info status") or "", where, regs,
                       hmp(monitor, "info lapic") or "")
