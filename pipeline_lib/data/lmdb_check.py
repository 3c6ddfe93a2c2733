"""A structural check of an LMDB file, done before the LMDB library walks it.

The LMDB C library trusts its file: a truncated `data.mdb` kills the process
with SIGBUS when a page past the end is touched, and a damaged page stops it
with an assertion (`Assertion 'IS_LEAF(mp)' failed`), neither of which Python
can catch. `check_lmdb_file` reads the file's own structure first, with
plain reads, and raises `LmdbCorrupt` naming what is wrong: the file is
shorter than its last page, or a branch or leaf page of the main B-tree
does not hold its own page number, has an unknown type, or points outside
the file. Record values are not read (overflow pages are only bounds-checked),
so the cost is one pass over the tree's branch and leaf pages.

The layout read here is LMDB's on-disk format (lmdb.h / mdb.c, format
version 1): 16-byte page headers, two meta pages, 8-byte node headers.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

MAGIC = 0xBEEFC0DE
PAGE_HEADER = 16
NODE_HEADER = 8
P_BRANCH, P_LEAF, P_OVERFLOW, P_LEAF2 = 0x01, 0x02, 0x04, 0x20
F_BIGDATA = 0x01
INVALID_PAGE = (1 << 64) - 1
MAX_DEPTH = 64  # a B-tree this deep would hold more records than any file


class LmdbCorrupt(ValueError):
    """An LMDB file whose structure is damaged; `reason` says where."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _meta(buf: bytes, offset: int) -> tuple[int, int, int, int] | None:
    """(txnid, page size, root page, last page) of the meta page at `offset`, or None."""
    if len(buf) < offset + PAGE_HEADER + 136:
        return None
    base = offset + PAGE_HEADER
    magic, version = struct.unpack_from("=II", buf, base)
    if magic != MAGIC:
        return None
    # mm_dbs[0] (free list) starts at +24, its md_pad is the page size; mm_dbs[1] (main) at +72
    (psize,) = struct.unpack_from("=I", buf, base + 24)
    (root,) = struct.unpack_from("=Q", buf, base + 72 + 40)
    last, txnid = struct.unpack_from("=QQ", buf, base + 120)
    return txnid, psize, root, last


_checked: set[tuple[int, int, int, int]] = set()  # files found sound, by identity and version


def check_lmdb_file(data_path: str | os.PathLike) -> None:
    """Raise LmdbCorrupt when `data_path` (an LMDB `data.mdb`) is truncated or damaged.

    A file found sound is not walked again in this process until it changes.
    """
    path = Path(data_path)
    st = path.stat()
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if identity in _checked:
        return
    _check(path, st.st_size)
    _checked.add(identity)


def _check(path: Path, size: int) -> None:
    if size == 0:
        raise LmdbCorrupt(path, "empty file (0 bytes)")
    # pread, not mmap: mapped pages would count in this process's peak memory (VmHWM)
    # even after unmapping, and the walk touches every leaf page of the file.
    with open(path, "rb") as f:
        fd = f.fileno()
        first = _meta(os.pread(fd, PAGE_HEADER + 136, 0), 0)
        if first is None:
            raise LmdbCorrupt(path, "no LMDB meta page at the start; not an LMDB file")
        psize = first[1]
        if psize < 512 or psize & (psize - 1):
            raise LmdbCorrupt(path, f"meta page gives page size {psize}")
        second = _meta(os.pread(fd, PAGE_HEADER + 136, psize), 0)
        metas = [m for m in (first, second) if m is not None]
        _txnid, _, root, last = max(metas)
        need = (last + 1) * psize
        if size < need:
            raise LmdbCorrupt(path, f"truncated or damaged: {size} bytes, but its meta page "
                              f"says the last page ends at byte {need}")
        if root != INVALID_PAGE:
            _walk(fd, path, psize, last, root)


def _walk(fd: int, path: Path, psize: int, last: int, root: int) -> None:
    stack = [(root, 0)]
    while stack:
        pgno, depth = stack.pop()
        where = f"page {pgno}"
        if not 2 <= pgno <= last:
            raise LmdbCorrupt(path, f"{where}: page number outside the file (pages 2..{last})")
        if depth > MAX_DEPTH:
            raise LmdbCorrupt(path, f"{where}: B-tree deeper than {MAX_DEPTH} levels (a loop?)")
        page = os.pread(fd, psize, pgno * psize)
        if len(page) < psize:
            raise LmdbCorrupt(path, f"{where}: ends past the end of the file (truncated?)")
        own, _, flags, lower, upper = struct.unpack_from("=QHHHH", page, 0)
        if own != pgno:
            raise LmdbCorrupt(path, f"{where}: holds the header of page {own} (damaged or zeroed)")
        if not flags & (P_BRANCH | P_LEAF) or flags & P_OVERFLOW:
            raise LmdbCorrupt(path, f"{where}: not a branch or leaf page (flags 0x{flags:x})")
        if not PAGE_HEADER <= lower <= upper <= psize:
            raise LmdbCorrupt(path, f"{where}: bad free-space bounds {lower}..{upper}")
        if flags & P_LEAF2:
            continue  # fixed-size keys, no nodes: not used by Caffe's databases
        count = (lower - PAGE_HEADER) // 2
        offsets = struct.unpack_from(f"={count}H", page, PAGE_HEADER)
        for offset in offsets:
            if not upper <= offset <= psize - NODE_HEADER:
                raise LmdbCorrupt(path, f"{where}: node offset {offset} outside the page")
            lo, hi, nflags, ksize = struct.unpack_from("=HHHH", page, offset)
            end = offset + NODE_HEADER + ksize
            if flags & P_BRANCH:
                if end > psize:
                    raise LmdbCorrupt(path, f"{where}: a key runs past the end of the page")
                stack.append((lo | hi << 16 | nflags << 32, depth + 1))
                continue
            if nflags & F_BIGDATA:
                if end + 8 > psize:
                    raise LmdbCorrupt(path, f"{where}: a record runs past the end of the page")
                (overflow,) = struct.unpack_from("=Q", page, end)
                pages = (PAGE_HEADER - 1 + (lo | hi << 16)) // psize + 1
                if not 2 <= overflow or overflow + pages - 1 > last:
                    raise LmdbCorrupt(path, f"{where}: a record's value lies outside the file")
            elif end + (lo | hi << 16) > psize:
                raise LmdbCorrupt(path, f"{where}: a record runs past the end of the page")
