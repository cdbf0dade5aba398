"""One gauntlet cell on a Dask worker: an ordinary `ktstr run` as a child process.

The child is the same CLI a person types, so the run directory, the verdict and the store
are the same as any run's. It gets SIGTERM when the worker's thread that started it dies
(PR_SET_PDEATHSIG), so a worker killed -9 takes its run down cleanly: `ktstr run` treats
SIGTERM like Ctrl-C, stops QEMU (which itself dies with its parent) and marks the run
interrupted. A gauntlet that is cancelled asks each worker to end its cells the same way
(`end_cells`, run through Client.run).

Where the run directory is written: straight into the user's store when the worker can
see it (the same machine, or a shared file system - recognised by the gauntlet record's
token), else into a private temporary store, packed after the run and sent back to the
client with the result (`gather.unpack_run` puts it in the user's store).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from ..rundir.layout import GAUNTLETS

CLI_MODULE = "ktstr_cli"  # `python -m CLI_MODULE run ...`
PR_SET_PDEATHSIG = 1
END_GRACE_S = 30.0  # a cancelled cell's `ktstr run` has this long to stop its VM
PACK_LIMIT = 256 << 20  # a run directory bigger than this is not sent back whole
PRIVATE_PREFIX = "ktstr-gauntlet-"  # + the worker's pid: a private store in the temp dir

# gauntlet id -> the `ktstr run` children of this worker process (for end_cells).
_CHILDREN: dict[str, set[subprocess.Popen]] = {}


class CellError(Exception):
    """`ktstr run` ended without a result (it crashed or was refused). Dask retries the
    cell once (retries=1); the message is what the gauntlet reports if it fails again."""


def _term_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started us dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


def store_is_shared(ctx: dict[str, Any]) -> bool:
    """True when this worker sees the client's store (its gauntlet record, same token)
    and the client did not ask for run directories to be sent back (--send-runs)."""
    if ctx.get("send_runs"):
        return False
    record = Path(ctx["store"]) / GAUNTLETS / f"{ctx['gauntlet']}.json"
    try:
        return json.loads(record.read_text()).get("token") == ctx["token"]
    except (OSError, ValueError, AttributeError):
        return False


def run_args(cell: dict[str, Any], ctx: dict[str, Any], *, as_json: bool = True) -> list[str]:
    """The `ktstr run ...` arguments of a cell (after `ktstr`); the workstation's
    "rerun cell" uses the same."""
    args = ["run", *(["--json"] if as_json else []),
            "--scheduler", cell["scheduler"], "--topology", cell["topology"],
            "--duration", f"{ctx['duration_s']}s",
            "--gauntlet", ctx["gauntlet"], "--gauntlet-cell", cell["key"]]
    if cell.get("kernel"):
        args += ["--kernel", cell["kernel"]]
    if ctx.get("workload"):
        args += ["--workload", ctx["workload"]]
    if ctx.get("sched_args"):
        args += ["--sched-args", ctx["sched_args"]]
    if ctx.get("no_auto_repro"):
        args.append("--no-auto-repro")
    return args


def run_argv(cell: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """The command line a worker starts for a cell."""
    return [sys.executable, "-m", CLI_MODULE, *run_args(cell, ctx)]


def run_cell(cell: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """Run one cell on this worker; returns what the client needs (see gather)."""
    from distributed import get_worker

    worker = get_worker()
    shared = store_is_shared(ctx)
    if not shared:
        sweep_private_stores()
    home = ctx["store"] if shared else tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-")
    t0 = time.time()
    try:
        env = dict(os.environ, KTSTR_HOME=home)
        # Files, not pipes: a worker killed -9 must not leave its `ktstr run` writing
        # into a broken pipe while it tears its VM down and marks the run interrupted.
        with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
            proc = subprocess.Popen(run_argv(cell, ctx), stdin=subprocess.DEVNULL,
                                    stdout=out_f, stderr=err_f, env=env,
                                    preexec_fn=_term_with_parent, start_new_session=True)
            _CHILDREN.setdefault(ctx["gauntlet"], set()).add(proc)
            try:
                worker.log_event(ctx["topic"], {"event": "started", "cell": cell["key"],
                                                "worker": worker.address, "pid": os.getpid(),
                                                "child": proc.pid,
                                                "host": socket.gethostname(), "t": t0})
                proc.wait()
            finally:
                _CHILDREN.get(ctx["gauntlet"], set()).discard(proc)
            out_f.seek(0)
            out = out_f.read()
            err_f.seek(0)
            err_f.seek(max(0, os.fstat(err_f.fileno()).st_size - 8192))
            err = err_f.read()
        result = _last_json(out)
        if result is None or not result.get("run_id"):
            tail = err.decode("utf-8", "replace").strip().splitlines()
            raise CellError(f"ktstr run exited {proc.returncode} on {socket.gethostname()} "
                            f"without a result: {tail[-1] if tail else 'no output'}")
        done = {"key": cell["key"], "run_id": result["run_id"],
                "verdict": result.get("verdict", "fail"), "phase": result.get("phase"),
                "worker": worker.address, "host": socket.gethostname(), "shared": shared,
                "wall_s": round(time.time() - t0, 3), "exit_code": proc.returncode,
                "first_line": _first_line(result.get("message") or "")}
        if not shared and result.get("run_dir"):
            done["packed"] = pack_run(Path(result["run_dir"]))
        worker.log_event(ctx["topic"], {"event": "finished", "cell": cell["key"],
                                        "worker": worker.address, "verdict": done["verdict"],
                                        "run_id": done["run_id"]})
        return done
    finally:
        if not shared:
            shutil.rmtree(home, ignore_errors=True)


def sweep_private_stores() -> None:
    """Remove private stores left by workers that died (killed -9 mid-cell): their
    names carry the worker's pid."""
    root = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for d in root.glob(f"{PRIVATE_PREFIX}*"):
            pid = d.name[len(PRIVATE_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_cells(gauntlet: str, grace_s: float = END_GRACE_S) -> list[int]:
    """Client.run target: SIGTERM this worker's `ktstr run` children of `gauntlet` and
    wait for each to stop its VM (SIGKILL after `grace_s`). Returns their pids."""
    procs = list(_CHILDREN.get(gauntlet, ()))
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    return [p.pid for p in procs]


def pack_run(run_dir: Path) -> bytes:
    """The run directory as an uncompressed tar (regular files and directories only;
    the live control socket is skipped)."""
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(run_dir, arcname=run_dir.name, recursive=False)
        for path in sorted(run_dir.rglob("*")):
            rel = path.relative_to(run_dir)
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            if path.is_file():
                total += path.stat().st_size
                if total > PACK_LIMIT:
                    continue
            tar.add(path, arcname=f"{run_dir.name}/{rel}", recursive=False)
    return buf.getvalue()


def _last_json(out: bytes) -> dict[str, Any] | None:
    """`ktstr run --json` prints one JSON object (indented) on stdout."""
    text = out.decode("utf-8", "replace").strip()
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj = json.loads(text[start:])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:300]
