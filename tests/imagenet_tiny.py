"""A tiny ImageNet laid out as the "Brewing ImageNet" tutorial expects, made by the tests.

`make_tiny_imagenet(base)` writes under `base`:
  train/<synset>/<synset>_<i>.JPEG   class-per-folder training images of varied sizes
  val/val_<i>.JPEG                   a flat validation folder
  train.txt, val.txt                 `relative/path label` listings
  synset_words.txt                   synsets in an unsorted order (labels follow ASCII order)
Among the training images: one greyscale JPEG, one CMYK JPEG, one RGBA PNG and one
corrupt file (named `CORRUPT`), so conversions must cope with each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SYNSETS = {"n02000000": "second class", "n01000000": "first class", "n03000000": "third class"}
CORRUPT = "n02000000/n02000000_corrupt.JPEG"
GRAY = "n01000000/n01000000_gray.JPEG"
CMYK = "n03000000/n03000000_cmyk.JPEG"
PNG = "n02000000/n02000000_alpha.png"


@dataclass(frozen=True)
class TinyImageNet:
    base: Path
    train: list[tuple[str, int]]  # every listed training image, the corrupt one included
    val: list[tuple[str, int]]

    @property
    def train_root(self) -> Path:
        return self.base / "train"

    @property
    def val_root(self) -> Path:
        return self.base / "val"


def _picture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth colour image (compresses like a photo, unlike noise)."""
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, size=3)
    freq = rng.uniform(0.05, 0.3, size=(3, 2))
    channels = [127.5 + 120 * np.sin(freq[c, 0] * y + freq[c, 1] * x + phase[c])
                for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def make_tiny_imagenet(base: Path, per_class: int = 3, val_count: int = 4,
                       seed: int = 0) -> TinyImageNet:
    rng = np.random.default_rng(seed)
    base = Path(base)
    labels = {s: i for i, s in enumerate(sorted(SYNSETS))}
    train: list[tuple[str, int]] = []

    def save(rel: str, pixels: np.ndarray, mode: str | None = None, **kw) -> None:
        path = base / "train" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(pixels)
        if mode:
            img = img.convert(mode)
        img.save(path, **kw)

    for synset in SYNSETS:
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(40, 90, size=2))
            rel = f"{synset}/{synset}_{i}.JPEG"
            save(rel, _picture(rng, h, w), format="JPEG", quality=90)
            train.append((rel, labels[synset]))
    save(GRAY, _picture(rng, 50, 70), "L", format="JPEG")
    save(CMYK, _picture(rng, 64, 48), "CMYK", format="JPEG")
    save(PNG, _picture(rng, 45, 60), "RGBA", format="PNG")
    (base / "train" / CORRUPT).write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    for rel in (GRAY, CMYK, PNG, CORRUPT):
        train.append((rel, labels[rel.split("/")[0]]))
    train.sort()

    val: list[tuple[str, int]] = []
    (base / "val").mkdir(parents=True, exist_ok=True)
    for i in range(val_count):
        rel = f"val_{i:03d}.JPEG"
        h, w = (int(v) for v in rng.integers(40, 90, size=2))
        Image.fromarray(_picture(rng, h, w)).save(base / "val" / rel, format="JPEG")
        val.append((rel, i % len(SYNSETS)))

    (base / "train.txt").write_text("".join(f"{p} {label}\n" for p, label in train))
    (base / "val.txt").write_text("".join(f"{p} {label}\n" for p, label in val))
    (base / "synset_words.txt").write_text("".join(f"{s} {w}\n" for s, w in SYNSETS.items()))
    return TinyImageNet(base, train, val)
