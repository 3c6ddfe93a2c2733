"""Image listings (`train.txt`, `val.txt`) and synsets (`synset_words.txt`), as Caffe uses them.

A listing line is `relative/path.JPEG label`; the path may hold spaces (the
label follows the last one, as Caffe's convert_imageset splits it). Paths
are relative to an image root and must stay inside it: absolute paths,
`..` components and backslashes are rejected, with the listing line named.

Labels are the index of a synset in ASCII-sorted order of the synset ids
(the first word of each `synset_words.txt` line), as the "Brewing ImageNet"
tutorial defines them; the file's own order does not matter.

`scan_class_tree` writes listings for users who have only a class-per-folder
tree of images: one subfolder per class, labels by sorted folder name (or by
a given synset file).
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pipeline_lib.core.fsutil import atomic_write_bytes

#: file name endings taken as images when scanning a class tree (compared lower-cased)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ListingError(ValueError):
    """A listing or synset file that cannot be used; the message names file and line."""


class ListingEntry(NamedTuple):
    """One image of a listing: its path under the image root, its label, its line (1-based)."""

    path: str
    label: int
    line: int = 0


@dataclass(frozen=True)
class Synsets:
    """Synset ids in ASCII order (label = index) and their descriptions."""

    ids: tuple[str, ...]
    words: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def label(self, synset_id: str) -> int:
        """The label of `synset_id` (KeyError when it is not a synset)."""
        try:
            return self.ids.index(synset_id)
        except ValueError:
            raise KeyError(synset_id) from None


def _path_problem(path: str) -> str | None:
    """Why `path` is not a plain relative path inside its root, or None when it is."""
    if not path:
        return "empty image path"
    if "\\" in path:
        return f"image path {path!r} holds a backslash; use '/' between folders"
    if "\0" in path:
        return f"image path {path!r} holds a NUL byte"
    if path.startswith("/"):
        return f"image path {path!r} is absolute; listing paths must be relative to the image root"
    if "/../" in f"/{path}/":
        return (f"image path {path!r} leaves the image root ('..'); listing paths must stay "
                "inside it")
    if path.endswith(("/", "/.")) or path == ".":
        return f"image path {path!r} names a folder, not a file"
    return None


def check_relative_path(path: str, where: str) -> str:
    """`path` if it is a plain relative path that stays under its root; else ListingError."""
    problem = _path_problem(path)
    if problem:
        raise ListingError(f"{where}: {problem}")
    return path


def _parse_line(text: str, num_classes: int | None) -> tuple[str, int] | str:
    """(path, label) of a listing line, or the reason it is not one."""
    path, sep, label_text = text.rpartition(" ")
    path = path.rstrip(" ")
    if not sep or not path:
        return f"expected 'relative/path label', got {text!r}"
    try:
        label = int(label_text)
    except ValueError:
        return f"label {label_text!r} is not an integer (line {text!r})"
    if label < 0:
        return f"label {label} is negative"
    if num_classes is not None and label >= num_classes:
        return (f"label {label} is out of range for {num_classes} synsets "
                f"(labels run 0..{num_classes - 1})")
    return _path_problem(path) or (path, label)


def read_listing(path: str | os.PathLike, num_classes: int | None = None, *,
                 allow_empty: bool = False) -> list[ListingEntry]:
    """The entries of a listing file, in file order; blank lines are skipped.

    Lines may end in CRLF and the file may start with a UTF-8 byte order mark,
    as files saved on Windows do.

    `num_classes` (the synset count), when given, bounds the labels. A listing
    without entries is an error unless `allow_empty`.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"listing {str(path)!r} does not exist") from None
    raw = raw.removeprefix(codecs.BOM_UTF8)  # as Windows editors save UTF-8
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ListingError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or line.isspace():
            continue
        parsed = _parse_line(line, num_classes)
        if isinstance(parsed, str):
            raise ListingError(f"{path}:{number}: {parsed}")
        entries.append(ListingEntry(parsed[0], parsed[1], number))
    if not entries and not allow_empty:
        raise ListingError(f"{path}: the listing names no images")
    return entries


def format_listing(entries: Iterable[ListingEntry]) -> bytes:
    return "".join(f"{e.path} {e.label}\n" for e in entries).encode("utf-8")


def write_listing(entries: Iterable[ListingEntry], path: str | os.PathLike) -> None:
    """Write `path label` lines atomically."""
    atomic_write_bytes(path, format_listing(entries))


def read_synsets(path: str | os.PathLike) -> Synsets:
    """Synsets from a `synset_words.txt`-style file: `<id> <words...>` per line.

    Ids are sorted in ASCII (byte) order; label i is the i-th id.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark is dropped
    except FileNotFoundError:
        raise FileNotFoundError(f"synset file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ListingError(f"{path}: not UTF-8 text ({exc.reason})") from None
    found: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        synset, _, words = line.partition(" ")
        if synset in found:
            raise ListingError(f"{path}:{number}: synset {synset!r} repeats line "
                               f"{lines[synset]}")
        found[synset] = words.strip()
        lines[synset] = number
    if not found:
        raise ListingError(f"{path}: no synsets")
    ids = sorted(found, key=lambda s: s.encode("utf-8"))
    return Synsets(tuple(ids), tuple(found[s] for s in ids))


def write_synsets(synsets: Synsets, path: str | os.PathLike) -> None:
    """`<id> <words>` lines in label order, atomically (words default to the id)."""
    text = "".join(f"{s} {w or s}\n" for s, w in zip(synsets.ids, synsets.words))
    atomic_write_bytes(path, text.encode("utf-8"))


def synsets_from_folders(root: str | os.PathLike) -> Synsets:
    """One synset per subfolder of `root` (the class-per-folder layout), ASCII-sorted."""
    root = Path(root)
    if not root.is_dir():
        raise ListingError(f"image root {str(root)!r} is not a folder")
    names = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                   key=lambda s: s.encode("utf-8"))
    if not names:
        raise ListingError(f"{root}: no class subfolders (expected one folder per class)")
    for name in names:
        if " " in name:
            raise ListingError(f"{root / name}: class folder names must not hold spaces (the "
                               "synset id is the first word of a synset_words.txt line)")
    return Synsets(tuple(names), tuple(names))


def scan_class_tree(root: str | os.PathLike, synsets: Synsets,
                    extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[ListingEntry]:
    """Entries for every image file under `root/<synset id>/...`, sorted by path.

    Each class folder must be a synset in `synsets`; files are found at any
    depth below it and kept when their ending is in `extensions`.
    """
    root = Path(root)
    if not root.is_dir():
        raise ListingError(f"image root {str(root)!r} is not a folder")
    wanted = tuple(e.lower() for e in extensions)
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            label = synsets.label(folder.name)
        except KeyError:
            raise ListingError(f"{folder}: class folder {folder.name!r} is not a synset of the "
                               f"synset file ({len(synsets)} synsets)") from None
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(".") or not name.lower().endswith(wanted):
                    continue
                rel = Path(dirpath, name).relative_to(root).as_posix()
                entries.append(ListingEntry(check_relative_path(rel, str(root)), label))
    if not entries:
        raise ListingError(f"{root}: no image files ({', '.join(wanted)}) in class folders")
    entries.sort(key=lambda e: e.path.encode("utf-8"))
    return entries
