"""Debian packages without touching the system's apt state.

A private apt configuration (sources list, lists, cache) under the ktstr cache, whose archive
URI is read from the machine's own apt configuration (deb822 .sources and classic
sources.list), never hard-coded. Used to fetch the sched_ext kernel and its source.
"""

from __future__ import annotations

import glob
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import FetchError, UsageError

APT_ETC = Path("/etc/apt")
SUITES = ("trixie-backports", "trixie")


def archive_uri(etc: Path = APT_ETC) -> str:
    """The first Debian archive URI configured on this machine (not the security one)."""
    uris: list[str] = []
    parts = etc / "sources.list.d"
    for f in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        for stanza in f.read_text(errors="replace").split("\n\n"):
            if re.search(r"^Enabled:\s*no", stanza, re.M | re.I):
                continue
            m = re.search(r"^URIs:\s*(.+)$", stanza, re.M)
            if m and re.search(r"^Types:.*\bdeb\b", stanza, re.M):
                uris.extend(m.group(1).split())
    lists = [etc / "sources.list"]
    lists += sorted(parts.glob("*.list")) if parts.is_dir() else []
    for f in lists:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if m:
                uris.append(m.group(1))
    for uri in uris:
        if "security" not in uri and uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    for uri in uris:
        if "security" not in uri:
            return uri.rstrip("/")
    raise UsageError(
        f"no Debian archive URI in the apt configuration under {etc}",
        "pass --kernel PATH with your own sched_ext kernel",
    )


@dataclass(frozen=True)
class PrivateApt:
    """apt-get/apt-cache with their own state in `root`, reading `uri` for `suites`."""

    root: Path
    uri: str
    suites: tuple[str, ...] = SUITES

    def _opts(self) -> list[str]:
        return [
            "-o", f"Dir::Etc::SourceList={self.root / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={self.root / 'lists'}",
            "-o", f"Dir::Cache={self.root / 'cache'}",
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Sandbox::User=root",
        ]

    def _run(self, tool: str, *args: str, cwd: Path | None = None, timeout: float = 900) -> str:
        try:
            p = subprocess.run([tool, *self._opts(), *args], cwd=cwd, capture_output=True,
                               text=True, timeout=timeout)
        except FileNotFoundError as e:
            raise FetchError(f"{tool} not found", "this needs a Debian machine with apt") from e
        except subprocess.TimeoutExpired as e:
            raise FetchError(f"{tool} {args[0]} timed out after {timeout:.0f}s",
                             f"check that {self.uri} is reachable") from e
        if p.returncode != 0:
            tail = " ".join((p.stderr or p.stdout).strip().splitlines()[-2:])
            raise FetchError(f"{tool} {args[0]} failed: {tail}",
                             f"check that {self.uri} is reachable, or pass --kernel PATH")
        return p.stdout

    def update(self) -> None:
        for d in ("lists/partial", "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        lines = [f"deb {self.uri} {suite} main\n" for suite in self.suites]
        (self.root / "sources.list").write_text("".join(lines))
        self._run("apt-get", "-q", "update", timeout=600)
        # apt-get update exits 0 when it could not reach the archive: look for the lists.
        prefix = re.sub(r"^[a-z+]+://", "", self.uri).rstrip("/").replace("/", "_")
        for suite in self.suites:
            if not any((self.root / "lists").glob(f"{glob.escape(prefix)}_dists_{suite}_*Packages*")):
                raise FetchError(f"cannot reach the Debian archive {self.uri} (apt-get update got "
                                 f"no package list for {suite})",
                                 "check the network and the apt configuration, or pass --kernel PATH")

    def search(self, regex: str) -> list[str]:
        """Package names matching `regex` (apt-cache search --names-only)."""
        out = self._run("apt-cache", "search", "--names-only", regex)
        return [line.split(" - ", 1)[0].strip() for line in out.splitlines() if line.strip()]

    def show(self, package: str) -> dict[str, str]:
        """The newest candidate's control fields (Version, Size, ...)."""
        out = self._run("apt-cache", "show", "--no-all-versions", package)
        return dict(re.findall(r"^([A-Za-z0-9-]+):[ \t]*(.*)$", out, re.M))

    def version(self, package: str) -> str:
        v = self.show(package).get("Version")
        if not v:
            raise FetchError(f"no version for {package} in {self.uri}")
        return v

    def download(self, package: str, dest: Path) -> Path:
        """Download one .deb into `dest`; returns its path."""
        dest.mkdir(parents=True, exist_ok=True)
        before = set(dest.glob("*.deb"))
        self._run("apt-get", "-q", "download", package, cwd=dest)
        new = [p for p in dest.glob("*.deb") if p not in before]
        found = new or sorted(dest.glob(f"{package.split(':')[0]}_*.deb"))
        if not found:
            raise FetchError(f"apt-get download {package} produced no .deb")
        return found[0]


def debian_version_key(version: str) -> tuple:
    """Sort key for kernel versions like '7.3.4+deb13' (numeric parts compared as numbers)."""
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"[.+~-]", version))


def extract_deb(deb: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True,
                       timeout=600)
    if p.returncode != 0:
        raise FetchError(f"cannot unpack {deb.name}: {p.stderr.strip()[-200:]}")
