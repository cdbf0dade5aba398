"""Kernel images: bzImage -> vmlinux, the ELF build id, BTF presence, embedded config.

A bzImage carries the kernel ELF compressed (zstd, gzip or xz) after its real-mode setup.
The payload's place is in the setup header (boot protocol >= 2.08); when the header is
unusable we search for the compressor's magic. Decompression stops at the end of the first
frame: trailing bytes (the decompressor's size word, padding) follow it.
"""

from __future__ import annotations

import gzip
import lzma
import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b\x08"
XZ_MAGIC = b"\xfd7zXZ\x00"
BTF_MAGIC = 0xEB9F
CHUNK = 1 << 20


class ImageError(ValueError):
    """The file is not a kernel image of a kind we can read (message says why)."""


@dataclass(frozen=True)
class BzImageHeader:
    protocol: int          # boot protocol version, e.g. 0x20f
    setup_sects: int
    payload_offset: int    # absolute file offset of the compressed kernel
    payload_length: int
    release: str           # the kernel_version string, e.g. "7.3.4+deb13-cloud-amd64 (...) #1 ..."


def read_bzimage_header(data: bytes) -> BzImageHeader:
    """Parse the x86 boot setup header (Documentation/arch/x86/boot.rst)."""
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        raise ImageError("no x86 boot header (HdrS)")
    protocol = struct.unpack_from("<H", data, 0x206)[0]
    setup_sects = data[0x1F1] or 4
    pm_start = (setup_sects + 1) * 512
    off = length = 0
    if protocol >= 0x208:
        off, length = struct.unpack_from("<II", data, 0x248)
        off += pm_start
    release = ""
    kv = struct.unpack_from("<H", data, 0x20E)[0]
    if kv and kv + 0x200 < len(data):
        raw = data[kv + 0x200: kv + 0x200 + 256].split(b"\0", 1)[0]
        release = raw.decode("ascii", "replace")
    return BzImageHeader(protocol, setup_sects, off, length, release)


def is_bzimage(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(0x210)
    return len(head) >= 0x206 and head[0x202:0x206] == b"HdrS"


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == ELF_MAGIC


def is_linux_elf(path: Path) -> bool:
    """An ELF that carries the kernel's "Linux version " banner."""
    if not is_elf(path):
        return False
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            return False
    with data:
        return data.find(b"Linux version ") >= 0


def _payload_start(data: bytes | mmap.mmap) -> int:
    """Offset of the compressed kernel: from the header, else the first compressor magic."""
    try:
        hdr = read_bzimage_header(bytes(data[:0x300]))
        if hdr.payload_offset and data[hdr.payload_offset:hdr.payload_offset + 4] in (
                ZSTD_MAGIC, XZ_MAGIC[:4]) or data[hdr.payload_offset:
                                                  hdr.payload_offset + 3] == GZIP_MAGIC:
            return hdr.payload_offset
    except ImageError:
        pass
    hits = [i for i in (data.find(m) for m in (ZSTD_MAGIC, GZIP_MAGIC, XZ_MAGIC)) if i >= 0]
    if not hits:
        raise ImageError("no zstd, gzip or xz payload inside")
    return min(hits)


def _decompressor(magic: bytes):
    if magic.startswith(ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().decompressobj()
    if magic.startswith(GZIP_MAGIC):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if magic.startswith(XZ_MAGIC[:4]):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    raise ImageError("unknown compression")


def _chunks(data: mmap.mmap, start: int) -> Iterator[bytes]:
    for i in range(start, len(data), CHUNK):
        yield data[i:i + CHUNK]


def extract_vmlinux(bzimage: Path, dest: Path) -> None:
    """Decompress the ELF kernel inside `bzimage` into `dest` (written directly; callers
    write into a temp dir they rename). Raises ImageError when it is not a kernel."""
    with open(bzimage, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as e:  # empty file
            raise ImageError("empty file") from e
    with data:
        start = _payload_start(data)
        dec = _decompressor(bytes(data[start:start + 6]))
        first = True
        try:
            with open(dest, "wb") as out:
                for chunk in _chunks(data, start):
                    piece = dec.decompress(chunk)
                    if first and piece:
                        if not piece.startswith(ELF_MAGIC):
                            raise ImageError("the decompressed payload is not an ELF kernel")
                        first = False
                    out.write(piece)
                    if getattr(dec, "eof", False):
                        break
                if hasattr(dec, "flush"):
                    out.write(dec.flush())
        except (zstandard.ZstdError, zlib.error, lzma.LZMAError, EOFError, gzip.BadGzipFile) as e:
            raise ImageError(f"corrupt compressed kernel: {e}") from e
        if first:
            raise ImageError("the compressed payload is empty")


def _elf(path: Path):
    try:
        f = open(path, "rb")
        return f, ELFFile(f)
    except ELFError as e:
        f.close()
        raise ImageError(f"not an ELF file: {e}") from e


def elf_build_id(path: Path) -> str:
    """The NT_GNU_BUILD_ID note of an ELF file as hex ("" when it has none)."""
    f, elf = _elf(path)
    with f:
        for sec in elf.iter_sections():
            if sec["sh_type"] != "SHT_NOTE":
                continue
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    return str(note["n_desc"])
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_NOTE":
                continue
            for note in seg.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    return str(note["n_desc"])
    return ""


def btf_strings(path: Path) -> bytes | None:
    """The string section of the ELF's .BTF (None when there is no .BTF section)."""
    f, elf = _elf(path)
    with f:
        sec = elf.get_section_by_name(".BTF")
        if sec is None:
            return None
        data = sec.data()
    if len(data) < 24:
        return b""
    endian = "<" if struct.unpack_from("<H", data, 0)[0] == BTF_MAGIC else ">"
    magic, _ver, _flags, hdr_len, _toff, _tlen, str_off, str_len = struct.unpack_from(
        endian + "HBBIIIII", data, 0)
    if magic != BTF_MAGIC:
        return b""
    return data[hdr_len + str_off: hdr_len + str_off + str_len]


def btf_has_name(strings: bytes, name: str) -> bool:
    return b"\0" + name.encode() + b"\0" in b"\0" + strings


def embedded_config(path: Path) -> str | None:
    """The kernel config built in with CONFIG_IKCONFIG (between IKCFG_ST and IKCFG_ED)."""
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            return None
    with data:
        start = data.find(b"IKCFG_ST")
        if start < 0:
            return None
        end = data.find(b"IKCFG_ED", start)
        if end < 0:
            return None
        try:
            return gzip.decompress(bytes(data[start + 8:end])).decode("utf-8", "replace")
        except (OSError, EOFError, zlib.error):
            return None
