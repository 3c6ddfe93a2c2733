"""WindowData: foreground/background split and labels, batch composition, warping of solid
windows, context padding and square crops by hand, mirror, mean file and values, scale,
resume, the data-layer family's answers, and the window file's errors."""

import numpy as np
import pytest
from basic_layer_util import make_layer, run
from PIL import Image

from pipeline_lib.engine.layers.window_data import WindowDataLayer, window_geometry
from pipeline_lib.proto.blobproto import write_mean_binaryproto

RED, GREEN, BLUE = (200, 10, 20), (5, 180, 40), (30, 60, 250)  # RGB


def image(path, w=12, h=10, fill=(0, 0, 0), boxes=()):
    """A PNG with solid rectangles (x1, y1, x2, y2 inclusive, RGB colour)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[...] = fill
    for (x1, y1, x2, y2), colour in boxes:
        a[y1:y2 + 1, x1:x2 + 1] = colour
    Image.fromarray(a).save(path)
    return path


def window_file(path, entries):
    lines = []
    for i, (img, windows) in enumerate(entries):
        lines += [f"# {i}", str(img), "3 10 12", str(len(windows))]
        lines += [" ".join(map(str, w)) for w in windows]
    path.write_text("\n".join(lines) + "\n")
    return path


def text(source, batch=8, transform="crop_size: 4", extra=""):
    return (f'name: "win" type: "WindowData" top: "data" top: "label" '
            f'transform_param {{ {transform} }} '
            f'window_data_param {{ source: "{source}" batch_size: {batch} '
            f'fg_threshold: 0.5 bg_threshold: 0.3 {extra} }}')


@pytest.fixture
def scene(tmp_path):
    """One image: a red object (class 2, overlap 0.9), a blue background window (class 5
    written, overlap 0.1: label 0) and a green window in between (overlap 0.4: unused)."""
    img = image(tmp_path / "a.png", boxes=[((1, 1, 4, 4), RED), ((6, 1, 9, 3), BLUE),
                                           ((6, 5, 10, 8), GREEN)])
    return window_file(tmp_path / "windows.txt", [(img, [
        (2, 0.9, 1, 1, 4, 4), (5, 0.1, 6, 1, 9, 3), (3, 0.4, 6, 5, 10, 8)])])


def bgr(rgb):
    return np.array(rgb[::-1], float).reshape(3, 1, 1)


def test_background_first_then_foreground_with_their_colours(scene):
    layer = make_layer(text(scene, extra="fg_fraction: 0.25"))
    data, label = run(layer, [])
    assert data.shape == (8, 3, 4, 4) and label.shape == (8,)
    np.testing.assert_array_equal(label.data, [0] * 6 + [2] * 2)
    for i in range(8):
        colour = RED if label.data[i] == 2 else BLUE
        np.testing.assert_array_equal(data.data[i], np.broadcast_to(bgr(colour), (3, 4, 4)))


def test_mean_values_and_scale(scene):
    layer = make_layer(text(scene, batch=2, transform="crop_size: 3 mean_value: 10 "
                                                      "mean_value: 20 mean_value: 30",
                            extra="fg_fraction: 0.5 scale: 0.5"))
    data, label = run(layer, [])
    assert list(label.data) == [0, 2]
    want = (bgr(RED) - np.array([10, 20, 30.0]).reshape(3, 1, 1)) * 0.5
    np.testing.assert_allclose(data.data[1], np.broadcast_to(want, (3, 3, 3)))


def test_mean_file_is_cropped_at_the_centre(scene, tmp_path):
    mean = np.arange(3 * 6 * 6, dtype=np.float32).reshape(3, 6, 6)
    write_mean_binaryproto(mean, tmp_path / "mean.binaryproto")
    layer = make_layer(text(scene, batch=1, transform=f'crop_size: 4 mean_file: '
                                                      f'"{tmp_path / "mean.binaryproto"}"',
                            extra="fg_fraction: 1"))
    data, _ = run(layer, [])
    np.testing.assert_allclose(data.data[0], bgr(RED) - mean[:, 1:5, 1:5])
    assert WindowDataLayer.mean_files_of(layer.param) == [str(tmp_path / "mean.binaryproto")]


def test_context_pad_leaves_zeros_outside_the_image(tmp_path):
    # a solid 8 x 8 image, the window its whole extent, crop 8, context_pad 2: the region
    # grows by a factor 8 / 4 to [-4, 12] (17 wide, 9 of it outside); the 8 inside pixels
    # warp to round(8 * 8/17) = 4, placed at round(4 * 8/17) = 2: rows and columns 2..5
    img = image(tmp_path / "s.png", w=8, h=8, fill=GREEN)
    src = window_file(tmp_path / "w.txt", [(img, [(1, 1.0, 0, 0, 7, 7), (0, 0.0, 0, 0, 7, 7)])])
    layer = make_layer(text(src, batch=1, transform="crop_size: 8",
                            extra="context_pad: 2 fg_fraction: 1"))
    data, _ = run(layer, [])
    want = np.zeros((3, 8, 8))
    want[:, 2:6, 2:6] = bgr(GREEN)
    np.testing.assert_array_equal(data.data[0], want)


def test_square_mode_geometry_and_mirror(tmp_path):
    # columns of values 10 * x: a window 2 wide (x 3..4) and 4 tall (y 2..5) grows square
    # to x 2..6, y 2..6 (5 x 5), so crop 5 needs no resizing
    a = np.repeat((np.arange(8) * 10).astype(np.uint8)[None, :, None], 8, axis=0)
    Image.fromarray(np.repeat(a, 3, axis=2)).save(tmp_path / "g.png")
    src = window_file(tmp_path / "w.txt", [(tmp_path / "g.png",
                                            [(1, 1.0, 3, 2, 4, 5), (0, 0.0, 0, 0, 1, 1)])])
    layer = make_layer(text(src, batch=1, transform="crop_size: 5",
                            extra='crop_mode: "square" fg_fraction: 1'))
    data, _ = run(layer, [])
    np.testing.assert_array_equal(data.data[0], np.broadcast_to([20, 30, 40, 50, 60], (3, 5, 5)))
    layer = make_layer(text(src, batch=16, transform="crop_size: 5 mirror: true",
                            extra='crop_mode: "square" fg_fraction: 1'))
    data, _ = run(layer, [])
    rows = {tuple(d[0, 0]) for d in data.data}
    assert rows == {(20, 30, 40, 50, 60), (60, 50, 40, 30, 20)}


def test_geometry_mirror_takes_the_right_padding():
    # a window at the left edge, padded: the part outside is on the left (pad_x1 > 0)
    _, _, (pad_w, _) = window_geometry((0, 0, 3, 3), 8, 8, 8, 2, False, False)
    _, _, (pad_w_mirrored, _) = window_geometry((0, 0, 3, 3), 8, 8, 8, 2, False, True)
    assert pad_w > 0 and pad_w_mirrored == 0


def test_resume_replays_the_same_batches(scene):
    layer = make_layer(text(scene, extra="fg_fraction: 0.5", transform="crop_size: 4 mirror: true"))
    data, label = run(layer, [])
    state = layer.get_state()
    layer.forward([], [data, label])
    want = data.data.copy(), label.data.copy()
    layer.set_state(state)
    layer.forward([], [data, label])
    np.testing.assert_array_equal(data.data, want[0])
    np.testing.assert_array_equal(label.data, want[1])
    layer.close()


def test_family_answers(scene):
    lp = make_layer(text(scene, batch=6)).param
    assert WindowDataLayer.batch_size_of(lp) == 6
    assert WindowDataLayer.sources_of(lp) == [str(scene)]
    WindowDataLayer.set_batch_size(lp, 3)
    assert lp.window_data_param.batch_size == 3


@pytest.mark.parametrize(("content", "message"), [
    ("", "the window file is empty"),
    ("# 0\nx.png\n3 10 12\n1\n2 0.9 1 1 4\n", "ends where a window coordinate"),
    ("# 0\nx.png\n3 10 12\n1\n0 0.9 1 1 4 4\n", "line 5: foreground window .* class 0"),
    ("% 0\n", "line 1: expected '# <image index>'"),
    ("# 0\nx.png\n3 ten 12\n", "line 3: expected the image's height, found 'ten'"),
])
def test_bad_window_files(tmp_path, content, message):
    (tmp_path / "w.txt").write_text(content)
    with pytest.raises(ValueError, match=rf"'win' \(WindowData\): .*{message}"):
        run(make_layer(text(tmp_path / "w.txt")), [])


def test_no_crop_size_is_an_error(scene):
    with pytest.raises(ValueError, match=r"'win'.*needs transform_param.crop_size"):
        run(make_layer(text(scene, transform="mirror: false")), [])


def test_window_outside_the_image_is_an_error(tmp_path):
    img = image(tmp_path / "a.png")
    src = window_file(tmp_path / "w.txt", [(img, [(1, 1.0, 0, 0, 20, 4), (0, 0.0, 0, 0, 1, 1)])])
    layer = make_layer(text(src, batch=1, extra="fg_fraction: 1"))
    with pytest.raises(ValueError, match=r"'win'.*line 5: window \(0, 0, 20, 4\) lies outside"):
        run(layer, [])
