"""Image files to Caffe's layout: channels, BGR order, EXIF orientation, resizing, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline_lib.data.images import (
    ImageError,
    ResizeSpec,
    decode_image,
    read_image,
    resampling_filter,
    resize_file,
)


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)


def test_colour_png_becomes_bgr_chw(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    got = read_image(tmp_path / "a.png")
    assert got.shape == (3, 12, 20) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, rgb[:, :, ::-1].transpose(2, 0, 1))


def test_gray_png_becomes_three_equal_channels(tmp_path, rgb):
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "g.png")
    got = read_image(tmp_path / "g.png")
    assert got.shape == (3, 12, 20)
    for c in range(3):
        np.testing.assert_array_equal(got[c], rgb[:, :, 0])
    gray = read_image(tmp_path / "g.png", gray=True)
    np.testing.assert_array_equal(gray, rgb[None, :, :, 0])


def test_rgba_png_drops_alpha(tmp_path, rgb):
    alpha = np.full((12, 20, 1), 7, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"),
                                  rgb[:, :, ::-1].transpose(2, 0, 1))


def test_16_bit_png_keeps_the_high_byte(tmp_path, rgb):
    wide = rgb[:, :, 1].astype(np.uint16) * 256 + 99
    Image.fromarray(wide).save(tmp_path / "w.png")
    decoded = decode_image(tmp_path / "w.png")
    assert decoded.mode.startswith("I")
    got = read_image(tmp_path / "w.png", gray=True)
    np.testing.assert_array_equal(got[0], rgb[:, :, 1])


def test_cmyk_jpeg_becomes_three_channels(tmp_path, rgb):
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    decoded = decode_image(tmp_path / "c.jpg")
    assert decoded.mode == "CMYK" and decoded.format == "JPEG"
    assert read_image(tmp_path / "c.jpg").shape == (3, 12, 20)


def test_exif_orientation_is_applied(tmp_path, rgb):
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    decoded = decode_image(tmp_path / "r.jpg")
    assert decoded.orientation == 6
    assert decoded.image.size == (12, 20)  # width and height swapped
    # and draft sees the swapped target: a 10x6 (h x w) target stays exact
    assert read_image(tmp_path / "r.jpg", resize=ResizeSpec(10, 6)).shape == (3, 10, 6)


def test_resize_is_exact_and_draft_stays_close(tmp_path):
    y, x = np.mgrid[0:600, 0:800]
    smooth = np.stack([(x * 255 // 800), (y * 255 // 600), ((x + y) * 255 // 1400)], -1)
    Image.fromarray(smooth.astype(np.uint8)).save(tmp_path / "big.jpg", quality=95)
    full = read_image(tmp_path / "big.jpg", resize=ResizeSpec(64, 48, draft=False))
    drafted = read_image(tmp_path / "big.jpg", resize=ResizeSpec(64, 48, draft=True))
    assert full.shape == drafted.shape == (3, 64, 48)
    assert np.abs(full.astype(int) - drafted.astype(int)).mean() < 2.0


def test_unknown_filter_is_named():
    assert resampling_filter("Lanczos") == Image.Resampling.LANCZOS
    with pytest.raises(ValueError, match="unknown resampling filter 'cubic'"):
        ResizeSpec(8, 8, "cubic")


def test_resize_file_keeps_jpeg_and_writes_others_as_png(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.JPEG", quality=90)
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    spec = ResizeSpec(8, 10)
    assert resize_file(tmp_path / "a.JPEG", tmp_path / "out/a.JPEG", spec) == "JPEG"
    assert resize_file(tmp_path / "b.bmp", tmp_path / "out/sub/b.bmp", spec) == "PNG"
    with Image.open(tmp_path / "out/a.JPEG") as a, Image.open(tmp_path / "out/sub/b.bmp") as b:
        assert (a.format, a.size, a.mode) == ("JPEG", (10, 8), "RGB")
        assert (b.format, b.size, b.mode) == ("PNG", (10, 8), "RGB")


def test_unreadable_files_name_the_path(tmp_path):
    (tmp_path / "bad.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (tmp_path / "text.png").write_text("hello")
    good = np.zeros((40, 40, 3), np.uint8)
    Image.fromarray(good).save(tmp_path / "cut.jpg")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "cut.jpg").read_bytes()[:300])
    for name in ("bad.JPEG", "text.png", "cut.jpg"):
        with pytest.raises(ImageError, match=f"{tmp_path / name}: cannot read image"):
            read_image(tmp_path / name)
    with pytest.raises(ImageError, match="missing.jpg: no such image file"):
        read_image(tmp_path / "missing.jpg")
