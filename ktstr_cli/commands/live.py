"""`ktstr pause|resume|snapshot|stop RUN`: control a live run through its control.sock."""

from __future__ import annotations

import argparse
import json

from . import add_store_option, open_store


def register(sub) -> None:
    for cmd, text in (("pause", "freeze a live run's guest (all vCPUs)"),
                      ("resume", "let a paused guest run again"),
                      ("snapshot", "save the kernel's sched_ext dump of a live run now, without failing it"),
                      ("stop", "end a live run now (it is judged on what it produced)")):
        p = sub.add_parser(cmd, help=text, description=text)
        p.add_argument("run", metavar="RUN", help="run id, unique prefix or substring")
        p.add_argument("--json", action="store_true", help="print the reply as JSON")
        add_store_option(p)
        p.set_defaults(func=cmd_control, control=cmd)


def cmd_control(args: argparse.Namespace) -> int:
    from ktstr_vmm.run.control import send_command
    run_dir = open_store(args).run_dir(args.run)
    reply = send_command(run_dir.path, args.control, timeout=30.0)
    if args.json:
        print(json.dumps(reply))
    elif args.control == "snapshot":
        print(f"{run_dir.run_id}: snapshot saved to {reply.get('file')} ({reply.get('bytes')} bytes)")
    else:
        print(f"{run_dir.run_id}: {args.control} ok")
    return 0
