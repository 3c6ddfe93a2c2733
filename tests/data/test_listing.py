"""Listings and synsets: parsing, confinement to the image root, labels, class-folder scans."""

from __future__ import annotations

import pytest

from pipeline_lib.data.listing import (
    ListingEntry,
    ListingError,
    read_listing,
    read_synsets,
    scan_class_tree,
    synsets_from_folders,
    write_listing,
    write_synsets,
)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_paths_labels_and_line_numbers(tmp_path):
    listing = _write(tmp_path / "train.txt",
                     "n01/a.JPEG 0\n\nn02/with space.JPEG 1\r\nn02/b.png 12\n")
    entries = read_listing(listing)
    assert entries == [
        ListingEntry("n01/a.JPEG", 0, 1),
        ListingEntry("n02/with space.JPEG", 1, 3),  # the label follows the last space
        ListingEntry("n02/b.png", 12, 4),
    ]


@pytest.mark.parametrize("line, words", [
    ("../outside.JPEG 0", "leaves the image root"),
    ("n01/../../etc/passwd 0", "leaves the image root"),
    ("/etc/passwd 0", "is absolute"),
    ("n01\\a.JPEG 0", "backslash"),
    ("n01/ 0", "names a folder"),
    ("n01/a.JPEG", "expected 'relative/path label'"),
    ("n01/a.JPEG one", "not an integer"),
    ("n01/a.JPEG -1", "negative"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, words):
    listing = _write(tmp_path / "val.txt", f"ok/a.JPEG 0\n{line}\n")
    with pytest.raises(ListingError) as err:
        read_listing(listing)
    assert f"{listing}:2" in str(err.value) and words in str(err.value)


def test_labels_are_checked_against_the_synset_count(tmp_path):
    listing = _write(tmp_path / "train.txt", "a.JPEG 0\nb.JPEG 2\nc.JPEG 3\n")
    assert len(read_listing(listing, num_classes=4)) == 3
    with pytest.raises(ListingError, match=r"train.txt:3: label 3 is out of range for 3 synsets"):
        read_listing(listing, num_classes=3)


def test_empty_listing_is_an_error_unless_allowed(tmp_path):
    listing = _write(tmp_path / "empty.txt", "\n")
    with pytest.raises(ListingError, match="names no images"):
        read_listing(listing)
    assert read_listing(listing, allow_empty=True) == []


def test_write_listing_round_trip(tmp_path):
    entries = [ListingEntry("x/y z.JPEG", 3, 1), ListingEntry("b.png", 0, 2)]
    write_listing(entries, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "x/y z.JPEG 3\nb.png 0\n"
    assert read_listing(tmp_path / "out.txt") == entries


def test_synset_labels_follow_ascii_order_not_file_order(tmp_path):
    path = _write(tmp_path / "synset_words.txt",
                  "n02 second, two\nn01 first\nN99 capital sorts first\n")
    synsets = read_synsets(path)
    assert synsets.ids == ("N99", "n01", "n02")
    assert synsets.words == ("capital sorts first", "first", "second, two")
    assert synsets.label("n02") == 2
    write_synsets(synsets, tmp_path / "copy.txt")
    assert read_synsets(tmp_path / "copy.txt") == synsets


def test_repeated_synset_is_an_error(tmp_path):
    path = _write(tmp_path / "synset_words.txt", "n01 a\nn02 b\nn01 c\n")
    with pytest.raises(ListingError, match=r"synset_words.txt:3: synset 'n01' repeats line 1"):
        read_synsets(path)


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_class_tree_scan_labels_by_sorted_folder(tmp_path):
    root = tmp_path / "train"
    for rel in ("b/2.JPEG", "b/1.jpeg", "a/x.png", "a/deeper/y.JPG", "a/notes.txt",
                "c/.hidden.JPEG", ".cache/z.JPEG"):
        _touch(root / rel)
    synsets = synsets_from_folders(root)
    assert synsets.ids == ("a", "b", "c")
    entries = scan_class_tree(root, synsets)
    assert [(e.path, e.label) for e in entries] == [
        ("a/deeper/y.JPG", 0), ("a/x.png", 0), ("b/1.jpeg", 1), ("b/2.JPEG", 1)]


def test_class_tree_folder_outside_the_synsets_is_an_error(tmp_path):
    root = tmp_path / "val"
    _touch(root / "n09" / "a.JPEG")
    synsets = synsets_from_folders(tmp_path / "val")
    _touch(root / "stray" / "b.JPEG")
    with pytest.raises(ListingError, match="'stray' is not a synset"):
        scan_class_tree(root, synsets)
