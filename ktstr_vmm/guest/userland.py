"""The guest's shell userland (docs/shell.md): busybox with a link per applet, bpftool with
its library closure, the one-word helpers (scx, scxmaps, rqs) and the shell's rc file.

Everything comes from the host: Debian's busybox-static and bpftool packages (`make setup`
installs them). Either may be missing: without busybox the guest has no /bin/sh and a
shell request is refused with the reason; without bpftool the shell works and `scxmaps`
says what is missing. guest_userland() never raises.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")
BPFTOOL = ("/usr/sbin/bpftool", "/sbin/bpftool", "/usr/bin/bpftool")
SKIP_APPLETS = frozenset({"sbin/init", "linuxrc"})  # /init is the agent
SHRC = "/etc/ktstr/shrc"
HELPERS_DIR = "/usr/local/bin"

# One line each, shown by `ktstr shell --help` and by `help` in the guest.
HELPERS = {
    "scx": "the sched_ext state: state, ops, switch_all, enable_seq, events",
    "scxmaps": "the scheduler's BPF maps (bpftool map show) and their contents; "
               "scxmaps NAME dumps one map whole",
    "rqs": "per-CPU run queues (nr_running, switches, the current task and the runnable "
           "ones) from the kernel's sched debug file; rqs -v prints it whole",
}

SCX = r"""#!/bin/sh
# scx: the sched_ext state
d=/sys/kernel/sched_ext
[ -d "$d" ] || { echo "scx: no $d: this kernel has no sched_ext" >&2; exit 1; }
printf '%-13s %s\n' state "$(cat $d/state)"
[ -r $d/root/ops ] && printf '%-13s %s\n' ops "$(cat $d/root/ops)"
for f in switch_all nr_rejected hotplug_seq enable_seq; do
  [ -r "$d/$f" ] && printf '%-13s %s\n' "$f" "$(cat $d/$f)"
done
if [ -r $d/root/events ]; then
  echo "events:"
  sed 's/^/  /' $d/root/events
fi
exit 0
"""

SCXMAPS = r"""#!/bin/sh
# scxmaps [NAME]: the scheduler's BPF maps and their contents
if ! command -v bpftool >/dev/null 2>&1; then
  echo "scxmaps: no bpftool in this guest (install the bpftool package on the host)" >&2
  exit 1
fi
lines=${SCXMAPS_LINES:-40}
found=0
bpftool map show | sed -n 's/^\([0-9][0-9]*\): \([a-z_]*\)  *name \([^ ]*\).*/\1 \2 \3/p' > /tmp/.scxmaps
while read id type name; do
  [ -n "$1" ] && [ "$name" != "$1" ] && continue
  found=1
  echo "== map $id $name ($type)"
  if [ -n "$1" ]; then
    bpftool map dump id "$id"
  else
    bpftool map dump id "$id" > /tmp/.scxmap 2>&1
    n=$(wc -l < /tmp/.scxmap)
    head -n "$lines" /tmp/.scxmap
    [ "$n" -gt "$lines" ] && echo "... $((n - lines)) more lines: scxmaps $name"
  fi
done < /tmp/.scxmaps
rm -f /tmp/.scxmaps /tmp/.scxmap
if [ "$found" = 0 ]; then
  if [ -n "$1" ]; then echo "scxmaps: no BPF map named '$1' (scxmaps lists them)" >&2
  else echo "scxmaps: no BPF maps loaded" >&2; fi
  exit 1
fi
"""

RQS = r"""#!/bin/sh
# rqs [-v]: per-CPU run queues from the kernel's sched debug file
f=/sys/kernel/debug/sched/debug
[ -r "$f" ] || f=/proc/sched_debug
if [ ! -r "$f" ]; then
  echo "rqs: no /sys/kernel/debug/sched/debug or /proc/sched_debug in this kernel" >&2
  exit 1
fi
[ "$1" = "-v" ] && exec cat "$f"
awk '
/^cpu#/ { cpu = $1; sub(/^cpu#/, "", cpu); sub(/,$/, "", cpu); intable = 0; next }
cpu != "" && /^  \.nr_running/ && nr[cpu] == "" { nr[cpu] = $NF; order[++n] = cpu }
cpu != "" && /^  \.nr_switches/ { sw[cpu] = $NF }
cpu != "" && /^  \.curr->pid/ { cur[cpu] = $NF }
/^runnable tasks:/ { intable = 1; next }
intable && /^ *-+/ { next }
intable && /^ *S +task/ { next }
intable && NF == 0 { intable = 0; next }
intable && cpu != "" && $1 ~ /R/ { tasks[cpu] = tasks[cpu] sprintf("    %s %s %s\n", $1, $2, $3) }
END {
  printf "%-4s %-10s %-12s %s\n", "CPU", "nr_running", "nr_switches", "curr pid"
  for (i = 1; i <= n; i++) {
    c = order[i]
    printf "%-4s %-10s %-12s %s\n", c, nr[c], sw[c], cur[c]
    printf "%s", tasks[c]
  }
}' "$f"
"""

SHRC_TEXT = r"""# ktstr guest shell (docs/shell.md)
PS1='ktstr:\w\$ '
help() {
  echo "ktstr helpers:"
HELP_LINES
  echo "busybox applets: busybox --list; bpftool: bpftool help"
}
"""


@dataclass(frozen=True)
class Userland:
    files: dict[str, Path] = field(default_factory=dict)  # guest path -> host file
    links: dict[str, str] = field(default_factory=dict)  # guest path -> link target
    data: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # guest path -> (bytes, mode)
    missing: tuple[str, ...] = ()  # what is not there and why, one line each


def _first(paths: tuple[str, ...], name: str) -> Path | None:
    for p in paths:
        if Path(p).is_file():
            return Path(p)
    found = shutil.which(name)
    return Path(found) if found else None


def applets(busybox: Path) -> list[str]:
    """busybox --list-full: applet paths relative to / ("bin/sh", "usr/bin/awk")."""
    try:
        out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln.strip() for ln in out.splitlines()
            if ln.strip() and ".." not in ln and not ln.startswith("/")]


def guest_userland() -> Userland:
    files: dict[str, Path] = {}
    links: dict[str, str] = {}
    missing: list[str] = []
    busybox = _first(BUSYBOX, "busybox")
    if busybox is None:
        missing.append("no busybox on the host (apt-get install busybox-static): "
                       "the guest has no shell")
    else:
        files["/bin/busybox"] = busybox
        for applet in applets(busybox):
            if applet not in SKIP_APPLETS and applet != "bin/busybox":
                links["/" + applet] = "/bin/busybox"
    bpftool = _first(BPFTOOL, "bpftool")
    if bpftool is None:
        missing.append("no bpftool on the host (apt-get install bpftool): "
                       "scxmaps will say so in the guest")
    else:
        files["/usr/sbin/bpftool"] = bpftool
    help_lines = "\n".join(f'  echo "  {name:<8} {text}"' for name, text in HELPERS.items())
    data = {
        f"{HELPERS_DIR}/scx": (SCX.encode(), 0o755),
        f"{HELPERS_DIR}/scxmaps": (SCXMAPS.encode(), 0o755),
        f"{HELPERS_DIR}/rqs": (RQS.encode(), 0o755),
        SHRC: (SHRC_TEXT.replace("HELP_LINES", help_lines).encode(), 0o644),
    }
    return Userland(files, links, data, tuple(missing))
