"""`ktstr kernel fetch | list | path | info`: the sched_ext kernels ktstr boots."""

from __future__ import annotations

import argparse
import json
import sys

from ktstr_vmm.errors import KernelError
from ktstr_vmm.kernel.kernels import Kernel, add_kernel_option, cached_kernels, resolve_kernel
from ktstr_vmm.progress import for_terminal

FILES = ("dir", "bzimage", "vmlinux", "config", "system-map")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernel", help="fetch, list and inspect sched_ext kernels",
                       description="Kernels live in the cache, one directory each "
                                   "(bzImage, vmlinux, config, kernel.json).")
    ksub = p.add_subparsers(dest="kernel_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    f = ksub.add_parser("fetch", help="fetch the newest Debian sched_ext kernel (cached)")
    f.add_argument("--refresh", action="store_true",
                   help="ask the archive for a newer kernel even when one is cached")
    f.set_defaults(func=cmd_fetch)

    ls = ksub.add_parser("list", help="the cached kernels, newest first")
    ls.add_argument("--json", action="store_true", help="one JSON array of manifests")
    ls.set_defaults(func=cmd_list)

    pa = ksub.add_parser("path", help="print a kernel's cache directory or one of its files")
    add_kernel_option(pa)
    pa.add_argument("--file", choices=FILES, default="dir", help="which path (default: dir)")
    pa.set_defaults(func=cmd_path)

    i = ksub.add_parser("info", help="a kernel's manifest and checks")
    add_kernel_option(i)
    i.add_argument("--json", action="store_true", help="print kernel.json")
    i.set_defaults(func=cmd_info)


def cmd_fetch(args: argparse.Namespace) -> int:
    from ktstr_vmm.kernel.fetch import fetch_outcome

    o = fetch_outcome(for_terminal(), refresh=args.refresh)
    how = f"fetched in {o.seconds:.1f}s" if o.downloaded else "already cached"
    print(f"kernel {o.kernel.version} ({how}): {o.kernel.dir}")
    return 0


def _status(k: Kernel) -> str:
    return "ok" if k.sched_ext and k.has_btf else \
        ("no sched_ext" if not k.sched_ext else "no BTF")


def cmd_list(args: argparse.Namespace) -> int:
    ks = cached_kernels()
    if args.json:
        print(json.dumps([_manifest(k) for k in ks], indent=2))
        return 0
    if not ks:
        print("no kernel in the cache (run ktstr kernel fetch, or pass --kernel PATH)",
              file=sys.stderr)
        return 0
    rows = [("VERSION", "ORIGIN", "CHECK", "BUILD ID", "FETCHED", "PATH")]
    rows += [(k.version, k.origin, _status(k), k.build_id[:12], k.fetched_at, str(k.dir))
             for k in ks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    k = resolve_kernel(args.kernel)
    p = {"dir": k.dir, "bzimage": k.bzimage, "vmlinux": k.vmlinux, "config": k.config,
         "system-map": k.system_map}[args.file]
    if p is None:
        raise KernelError(f"kernel {k.version} has no {args.file} file",
                          "pass --kernel with a build tree that has one")
    print(p)
    return 0


def _manifest(k: Kernel) -> dict:
    try:
        m = json.loads((k.dir / "kernel.json").read_text())
    except (OSError, ValueError):
        m = {}
    m["dir"] = str(k.dir)
    return m


def cmd_info(args: argparse.Namespace) -> int:
    k = resolve_kernel(args.kernel)  # resolve_kernel has run check_kernel
    if args.json:
        print(json.dumps(_manifest(k), indent=2))
        return 0
    lines = [
        ("version", k.version), ("release", k.release), ("origin", k.origin),
        ("source", k.source),
        ("packages", ", ".join(f"{n} {v}" for n, v in
                               (_manifest(k).get("packages") or {}).items()) or "-"),
        ("fetched", k.fetched_at), ("build id", k.build_id),
        ("sched_ext", "yes" if k.sched_ext else "no"), ("BTF", "yes" if k.has_btf else "no"),
        ("dir", str(k.dir)), ("bzImage", str(k.bzimage)), ("vmlinux", str(k.vmlinux)),
        ("config", str(k.config or "-")), ("System.map", str(k.system_map or "-")),
    ]
    for key, value in lines:
        print(f"{key + ':':<12}{value}")
    return 0
