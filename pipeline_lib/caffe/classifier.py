"""pycaffe's Classifier: a deploy net that predicts class scores for H x W x K images.

    clf = Classifier(deploy, weights, image_dims=(256, 256), mean=mean_bgr,
                     raw_scale=255, channel_swap=(2, 1, 0))
    scores = clf.predict([load_image("cat.jpg")])           # N x classes, 10-crop average
    scores = clf.predict(images, oversample=False)          # the centre crop only

Images are resized to `image_dims`, cropped to the net's input (10 crops averaged, or
the centre), and put through a `Transformer` (transpose to K x H x W, then the given
channel swap, raw scale, mean and input scale) as pycaffe does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline_lib.api import TEST, Net
from pipeline_lib.caffe.io import Transformer, oversample, resize_image


class Classifier(Net):
    def __init__(self, model_file, pretrained_file=None, image_dims: Sequence[int] | None = None,
                 mean: np.ndarray | None = None, input_scale: float | None = None,
                 raw_scale: float | None = None, channel_swap: Sequence[int] | None = None,
                 **net_options):
        super().__init__(model_file, pretrained_file, TEST, **net_options)
        if not self.inputs:
            raise ValueError(f"net {self.name!r} has no Input layer: a Classifier takes a "
                             "deploy net")
        in_ = self.inputs[0]
        self.transformer = Transformer({in_: self.blobs[in_].shape})
        self.transformer.set_transpose(in_, (2, 0, 1))
        if mean is not None:
            self.transformer.set_mean(in_, mean)
        if input_scale is not None:
            self.transformer.set_input_scale(in_, input_scale)
        if raw_scale is not None:
            self.transformer.set_raw_scale(in_, raw_scale)
        if channel_swap is not None:
            self.transformer.set_channel_swap(in_, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].shape[2:])
        self.image_dims = np.array(image_dims if image_dims is not None else self.crop_dims)
        if (self.image_dims < self.crop_dims).any():
            raise ValueError(f"image_dims {tuple(self.image_dims)} are smaller than the net's "
                             f"input {tuple(self.crop_dims)}")

    def predict(self, inputs: Sequence[np.ndarray], oversample: bool = True) -> np.ndarray:
        """Class scores (the net's first output) of H x W x K images: N x classes."""
        if len(inputs) == 0:
            raise ValueError("predict: no images")
        h, w = (int(d) for d in self.image_dims)
        images = np.stack([resize_image(im, (h, w)) for im in inputs])
        if oversample:
            crops = _oversample(images, self.crop_dims)
        else:
            top = int(h / 2.0 - self.crop_dims[0] / 2.0)
            left = int(w / 2.0 - self.crop_dims[1] / 2.0)
            crops = images[:, top:top + self.crop_dims[0], left:left + self.crop_dims[1], :]
        in_ = self.inputs[0]
        batch = np.stack([self.transformer.preprocess(in_, crop) for crop in crops])
        scores = self.forward_all(**{in_: batch})[self.outputs[0]]
        if oversample:
            scores = scores.reshape(len(scores) // 10, 10, -1).mean(axis=1)
        return scores


_oversample = oversample  # `predict`'s flag of the same name hides the function
