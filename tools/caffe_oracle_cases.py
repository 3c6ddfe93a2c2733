"""The nets that real Caffe runs as the oracle for the newer layer types (issue 15).

Each case is the body of a small net (our own text): learnable InnerProducts in front
of the layers under test so that one SGD step also encodes their backward, the
layers themselves, and the names of the tops to compare (`dumps`) and of the tops
that get a EuclideanLoss against a random target (`losses`). `tools/caffe_oracle.py`
adds the HDF5Data layers, the losses and the HDF5Output dumps, and runs both engines.
Inputs come from a generator seeded by the case's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Case:
    inputs: Callable[[np.random.Generator], dict[str, np.ndarray]]
    body: str
    dumps: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    #: loss tops: dumped in a separate run, since in Caffe a loss top that another layer
    #: reads (HDF5Output) gets no gradient unless its loss_weight is written out
    loss_dumps: list[str] = field(default_factory=list)
    #: (layer, blob index) -> values set before init.caffemodel is written
    preset: Callable[[np.random.Generator], dict[tuple[str, int], np.ndarray]] | None = None
    #: "TEST": a forward only, by `caffe test` (phase-dependent defaults)
    phase: str = "TRAIN"


def ip(name: str, bottom: str, top: str, num_output: int, axis: int = -1) -> str:
    """A learnable InnerProduct over the last axis (or `axis`): it keeps the other axes."""
    return (
        f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}"\n'
        f"  inner_product_param {{ num_output: {num_output} axis: {axis}\n"
        f'    weight_filler {{ type: "gaussian" std: 0.5 }}\n'
        f'    bias_filler {{ type: "gaussian" std: 0.2 }} }} }}\n'
    )


def layer(name: str, type_: str, bottoms: list[str], tops: list[str], params: str = "") -> str:
    b = " ".join(f'bottom: "{x}"' for x in bottoms)
    t = " ".join(f'top: "{x}"' for x in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t}\n  {params} }}\n'


GAUSS = 'type: "gaussian" std: 0.5'
FILLERS = f"weight_filler {{ {GAUSS} }} bias_filler {{ {GAUSS} }}"


def normal(*shape):
    return lambda rng: {"x": rng.normal(size=shape).astype(np.float32)}


def _bn_stats(rng):
    return {
        ("bn", 0): rng.normal(size=3).astype(np.float32),
        ("bn", 1): rng.uniform(0.5, 2.0, size=3).astype(np.float32),
        ("bn", 2): np.array([2.0], np.float32),
    }


def _neurons() -> tuple[str, list[str]]:
    specs = [
        ("elu", "ELU", "elu_param { alpha: 0.7 }"),
        ("swish", "Swish", "swish_param { beta: 1.3 }"),
        ("clip", "Clip", "clip_param { min: -0.4 max: 0.6 }"),
        ("prelu", "PReLU", f"prelu_param {{ filler {{ {GAUSS} }} }}"),
        ("prelu_shared", "PReLU", f"prelu_param {{ channel_shared: true filler {{ {GAUSS} }} }}"),
        ("absval", "AbsVal", ""),
        ("bnll", "BNLL", ""),
        ("exp", "Exp", "exp_param { base: 2 scale: 0.5 shift: 0.1 }"),
        ("exp_e", "Exp", ""),
        ("log", "Log", "log_param { base: 10 scale: 0.5 shift: 5 }"),
        ("log_e", "Log", "log_param { shift: 6 }"),
        ("power", "Power", "power_param { power: 2 scale: 0.5 shift: 1 }"),
        ("power3", "Power", "power_param { power: 3 scale: -0.7 shift: 0.2 }"),
        ("threshold", "Threshold", "threshold_param { threshold: 0.2 }"),
    ]
    body = ""
    for name, type_, params in specs:
        body += ip(f"pre_{name}", "x", f"x_{name}", 5)
        body += layer(name, type_, [f"x_{name}"], [f"y_{name}"], params)
    tops = [f"y_{name}" for name, _, _ in specs]
    return body, tops


_NEURON_BODY, _NEURON_TOPS = _neurons()


def _seq_inputs(rng):
    return {
        "x": rng.normal(size=(3, 2, 4)).astype(np.float32),
        "cont": np.array([[0, 0], [1, 1], [1, 0]], np.float32),
    }


CASES: dict[str, Case] = {
    "batchnorm_train": Case(
        normal(2, 3, 4, 5),
        ip("pre", "x", "xp", 5)
        + layer(
            "bn",
            "BatchNorm",
            ["xp"],
            ["y"],
            "batch_norm_param { use_global_stats: false moving_average_fraction: 0.9 eps: 1e-4 }",
        ),
        dumps=["y"],
        losses=["y"],
        preset=_bn_stats,
    ),
    "batchnorm_global": Case(
        normal(2, 3, 4, 5),
        ip("pre", "x", "xp", 5)
        + layer("bn", "BatchNorm", ["xp"], ["y"], "batch_norm_param { use_global_stats: true }"),
        dumps=["y"],
        losses=["y"],
        preset=_bn_stats,
    ),
    "scale": Case(
        lambda rng: {
            "x": rng.normal(size=(2, 3, 4, 5)).astype(np.float32),
            "z": rng.normal(size=(2, 3)).astype(np.float32),
        },
        ip("pre", "x", "xp", 5)
        + layer(
            "scale",
            "Scale",
            ["xp"],
            ["y"],
            f"scale_param {{ axis: 1 num_axes: 1 bias_term: true filler {{ {GAUSS} }}"
            f" bias_filler {{ {GAUSS} }} }}",
        )
        + ip("pre2", "x", "xp2", 5)
        + ip("prez", "z", "zp", 3)
        + layer("scale2", "Scale", ["xp2", "zp"], ["y2"], "scale_param { axis: 0 }"),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "batchnorm_test_phase": Case(
        normal(2, 3, 4, 5),
        ip("pre", "x", "xp", 5) + layer("bn", "BatchNorm", ["xp"], ["y"]),
        dumps=["y"],
        preset=_bn_stats,
        phase="TEST",
    ),
    "bias": Case(
        lambda rng: {
            "x": rng.normal(size=(2, 3, 4, 5)).astype(np.float32),
            "z": rng.normal(size=(2, 3)).astype(np.float32),
        },
        ip("pre", "x", "xp", 5)
        + layer(
            "bias",
            "Bias",
            ["xp"],
            ["y"],
            f"bias_param {{ axis: 1 num_axes: 2 filler {{ {GAUSS} }} }}",
        )
        + ip("pre2", "x", "xp2", 5)
        + ip("prez", "z", "zp", 3)
        + layer("bias2", "Bias", ["xp2", "zp"], ["y2"], "bias_param { axis: 0 }"),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "deconvolution": Case(
        normal(2, 3, 5, 5),
        ip("pre", "x", "xp", 5)
        + layer(
            "deconv",
            "Deconvolution",
            ["xp"],
            ["y"],
            f"convolution_param {{ num_output: 4 kernel_size: 3 stride: 2 pad: 1"
            f" weight_filler {{ {GAUSS} }} bias_filler {{ {GAUSS} }} }}",
        )
        + ip("pre2", "x", "xp2", 5)
        + layer(
            "deconv2",
            "Deconvolution",
            ["xp2"],
            ["y2"],
            f"convolution_param {{ num_output: 6 group: 3 kernel_h: 2 kernel_w: 3 stride: 2"
            f" weight_filler {{ {GAUSS} }} bias_term: false }}",
        ),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "crop": Case(
        lambda rng: {
            "x": rng.normal(size=(2, 3, 6, 7)).astype(np.float32),
            "r": rng.normal(size=(2, 3, 4, 4)).astype(np.float32),
            "r2": rng.normal(size=(2, 2, 3, 5)).astype(np.float32),
        },
        ip("pre", "x", "xp", 7)
        + layer("crop", "Crop", ["xp", "r"], ["y"], "crop_param { axis: 2 offset: 1 offset: 2 }")
        + ip("pre2", "x", "xp2", 7)
        + layer("crop2", "Crop", ["xp2", "r2"], ["y2"], "crop_param { axis: 1 offset: 1 }"),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "rnn": Case(
        _seq_inputs,
        ip("pre", "x", "xp", 4)
        + layer(
            "rnn",
            "RNN",
            ["xp", "cont"],
            ["y"],
            f"recurrent_param {{ num_output: 5 {FILLERS} }}",
        ),
        dumps=["y"],
        losses=["y"],
    ),
    "lstm": Case(
        _seq_inputs,
        ip("pre", "x", "xp", 4)
        + layer(
            "lstm",
            "LSTM",
            ["xp", "cont"],
            ["y"],
            f"recurrent_param {{ num_output: 4 {FILLERS} }}",
        ),
        dumps=["y"],
        losses=["y"],
    ),
    "lstm_unit": Case(
        lambda rng: {
            "c0": rng.normal(size=(1, 2, 3)).astype(np.float32),
            "g": rng.normal(size=(1, 2, 4)).astype(np.float32),
            "cont": np.array([[1, 0]], np.float32),
        },
        ip("pre_c", "c0", "c_prev", 3)
        + ip("pre_g", "g", "gates", 12)
        + layer("unit", "LSTMUnit", ["c_prev", "gates", "cont"], ["c", "h"]),
        dumps=["c", "h"],
        losses=["c", "h"],
    ),
    "mvn": Case(
        normal(2, 3, 4, 5),
        ip("pre", "x", "xp", 5)
        + layer("mvn", "MVN", ["xp"], ["y"])
        + ip("pre2", "x", "xp2", 5)
        + layer("mvn2", "MVN", ["xp2"], ["y2"], "mvn_param { across_channels: true }")
        + ip("pre3", "x", "xp3", 5)
        + layer("mvn3", "MVN", ["xp3"], ["y3"], "mvn_param { normalize_variance: false }"),
        dumps=["y", "y2", "y3"],
        losses=["y", "y2", "y3"],
    ),
    "spp": Case(
        normal(2, 3, 8, 9),
        ip("pre", "x", "xp", 9)
        + layer("spp", "SPP", ["xp"], ["y"], "spp_param { pyramid_height: 3 pool: MAX }")
        + ip("pre2", "x", "xp2", 9)
        + layer("spp2", "SPP", ["xp2"], ["y2"], "spp_param { pyramid_height: 2 pool: AVE }"),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "reduction": Case(
        normal(2, 3, 4),
        ip("pre1", "x", "x1", 4)
        + layer("sum", "Reduction", ["x1"], ["y1"], "reduction_param { operation: SUM axis: 1 }")
        + ip("pre2", "x", "x2", 4)
        + layer(
            "asum",
            "Reduction",
            ["x2"],
            ["y2"],
            "reduction_param { operation: ASUM axis: 2 coeff: 0.5 }",
        )
        + ip("pre3", "x", "x3", 4)
        + layer(
            "sumsq",
            "Reduction",
            ["x3"],
            ["y3"],
            "reduction_param { operation: SUMSQ axis: 1 coeff: 2 }",
        )
        + ip("pre4", "x", "x4", 4)
        + layer(
            "mean",
            "Reduction",
            ["x4"],
            ["y4"],
            "reduction_param { operation: MEAN axis: -1 coeff: -1.5 }",
        ),
        dumps=["y1", "y2", "y3", "y4"],
        losses=["y1", "y2", "y3", "y4"],
    ),
    "tile": Case(
        normal(2, 3, 4),
        ip("pre", "x", "xp", 4)
        + layer("tile", "Tile", ["xp"], ["y"], "tile_param { axis: 1 tiles: 3 }")
        + ip("pre2", "x", "xp2", 4)
        + layer("tile2", "Tile", ["xp2"], ["y2"], "tile_param { axis: -1 tiles: 2 }"),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "argmax": Case(
        normal(2, 3, 4),
        layer("argmax", "ArgMax", ["x"], ["y"])
        + layer("argmax2", "ArgMax", ["x"], ["y2"], "argmax_param { out_max_val: true top_k: 2 }")
        + layer("argmax3", "ArgMax", ["x"], ["y3"], "argmax_param { axis: 1 top_k: 2 }")
        + layer("argmax4", "ArgMax", ["x"], ["y4"], "argmax_param { axis: -1 out_max_val: true }"),
        dumps=["y", "y2", "y3", "y4"],
    ),
    "embed": Case(
        lambda rng: {"idx": np.array([1, 3, 1, 4], np.float32)},
        layer(
            "embed",
            "Embed",
            ["idx"],
            ["y"],
            f"embed_param {{ input_dim: 5 num_output: 3 {FILLERS} }}",
        ),
        dumps=["y"],
        losses=["y"],
    ),
    "sigmoid_cross_entropy_loss": Case(
        lambda rng: {
            "x": rng.normal(size=(3, 4)).astype(np.float32),
            "p": rng.uniform(size=(3, 4)).astype(np.float32),
        },
        ip("pre", "x", "xp", 4)
        + layer("loss", "SigmoidCrossEntropyLoss", ["xp", "p"], ["loss"])
        + ip("pre2", "x", "xp2", 4)
        + layer(
            "loss2",
            "SigmoidCrossEntropyLoss",
            ["xp2", "p"],
            ["loss2"],
            "loss_weight: 0.5 loss_param { normalization: BATCH_SIZE }",
        ),
        loss_dumps=["loss", "loss2"],
    ),
    "contrastive_loss": Case(
        lambda rng: {
            "a": rng.normal(size=(4, 3)).astype(np.float32),
            "b": rng.normal(size=(4, 3)).astype(np.float32),
            "sim": np.array([1, 0, 0, 1], np.float32),
        },
        ip("pre_a", "a", "fa", 3, axis=1)
        + ip("pre_b", "b", "fb", 3, axis=1)
        + layer(
            "loss",
            "ContrastiveLoss",
            ["fa", "fb", "sim"],
            ["loss"],
            "contrastive_loss_param { margin: 4 }",
        )
        + ip("pre_a2", "a", "fa2", 3, axis=1)
        + ip("pre_b2", "b", "fb2", 3, axis=1)
        + layer(
            "loss2",
            "ContrastiveLoss",
            ["fa2", "fb2", "sim"],
            ["loss2"],
            "contrastive_loss_param { margin: 4 legacy_version: true }",
        ),
        loss_dumps=["loss", "loss2"],
    ),
    "hinge_loss": Case(
        lambda rng: {
            "x": rng.normal(size=(4, 5)).astype(np.float32),
            "label": np.array([0, 3, 4, 3], np.float32),
        },
        ip("pre", "x", "xp", 5)
        + layer("loss", "HingeLoss", ["xp", "label"], ["loss"])
        + ip("pre2", "x", "xp2", 5)
        + layer("loss2", "HingeLoss", ["xp2", "label"], ["loss2"], "hinge_loss_param { norm: L2 }"),
        loss_dumps=["loss", "loss2"],
    ),
    "infogain_loss": Case(
        lambda rng: {
            "x": rng.normal(size=(4, 3)).astype(np.float32),
            "label": np.array([0, 2, 1, 2], np.float32),
            "H": (np.eye(3) + rng.uniform(0, 0.5, size=(3, 3))).astype(np.float32),
        },
        ip("pre", "x", "xp", 3) + layer("loss", "InfogainLoss", ["xp", "label", "H"], ["loss"]),
        loss_dumps=["loss"],
    ),
    "multinomial_logistic_loss": Case(
        lambda rng: {
            "x": rng.normal(size=(4, 3)).astype(np.float32),
            "label": np.array([0, 2, 1, 2], np.float32),
        },
        ip("pre", "x", "xp", 3)
        + layer("prob", "Softmax", ["xp"], ["prob"])
        + layer("loss", "MultinomialLogisticLoss", ["prob", "label"], ["loss"]),
        dumps=["prob"],
        loss_dumps=["loss"],
    ),
    "im2col": Case(
        normal(2, 3, 4, 4),
        ip("pre", "x", "xp", 4)
        + layer(
            "im2col",
            "Im2col",
            ["xp"],
            ["y"],
            "convolution_param { kernel_size: 3 stride: 2 pad: 1 }",
        )
        + ip("pre2", "x", "xp2", 4)
        + layer(
            "im2col2",
            "Im2col",
            ["xp2"],
            ["y2"],
            "convolution_param { kernel_h: 2 kernel_w: 3 dilation: 2 pad_w: 1 }",
        ),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "filter": Case(
        lambda rng: {
            "x": rng.normal(size=(4, 3)).astype(np.float32),
            "target": rng.normal(size=(4, 3)).astype(np.float32),
            "sel": np.array([1, 0, 1, 1], np.float32),
        },
        # a loss after a Filter needs its targets filtered too (Caffe sets it up with all rows)
        ip("pre", "x", "xp", 3)
        + layer("filter", "Filter", ["xp", "target", "sel"], ["y", "ty"])
        + layer("loss", "EuclideanLoss", ["y", "ty"], []),
        dumps=["y", "ty"],
    ),
    "batch_reindex": Case(
        lambda rng: {
            "x": rng.normal(size=(5, 4)).astype(np.float32),
            "perm": np.array([4, 0, 0, 2, 1, 4], np.float32),
        },
        ip("pre", "x", "xp", 4) + layer("reindex", "BatchReindex", ["xp", "perm"], ["y"]),
        dumps=["y"],
        losses=["y"],
    ),
    "parameter": Case(
        lambda rng: {},
        layer("param", "Parameter", [], ["p"], "parameter_param { shape { dim: 2 dim: 3 } }"),
        dumps=["p"],
        losses=["p"],
        preset=lambda rng: {("param", 0): rng.normal(size=(2, 3)).astype(np.float32)},
    ),
    # a net rule, not a layer: a top given a loss_weight that other layers also read gets
    # the weight plus their gradients (Caffe gives its Split the weight); Caffe also counts
    # a loss layer's value once more in the reported loss, which we do not copy
    "loss_weight_read_elsewhere": Case(
        lambda rng: {
            "x": rng.normal(size=(3, 4)).astype(np.float32),
            "p": rng.uniform(size=(3, 4)).astype(np.float32),
        },
        ip("pre", "x", "xp", 4)
        + layer("loss", "SigmoidCrossEntropyLoss", ["xp", "p"], ["loss"], "loss_weight: 0.5")
        + ip("pre2", "x", "xp2", 4)
        + layer("relu", "ReLU", ["xp2"], ["r"], "loss_weight: 0.25")
        + layer("double", "Power", ["r"], ["r2"], "power_param { scale: 2 }"),
        dumps=["loss", "r"],
        losses=["r2"],
    ),
    # the older layers, whose backward had not been compared with Caffe's either
    "convolution": Case(
        normal(2, 4, 6, 7),
        ip("pre", "x", "xp", 7)
        + layer(
            "conv",
            "Convolution",
            ["xp"],
            ["y"],
            f"convolution_param {{ num_output: 3 kernel_size: 3 stride: 2 pad: 1 {FILLERS} }}",
        )
        + ip("pre2", "x", "xp2", 7)
        + layer(
            "conv2",
            "Convolution",
            ["xp2"],
            ["y2"],
            "convolution_param { num_output: 4 group: 2 kernel_h: 2 kernel_w: 3 dilation: 2"
            f" {FILLERS} }}",
        ),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "pooling": Case(
        normal(2, 3, 7, 6),
        ip("pre", "x", "xp", 6)
        + layer(
            "max", "Pooling", ["xp"], ["y"], "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"
        )
        + ip("pre2", "x", "xp2", 6)
        + layer(
            "ave",
            "Pooling",
            ["xp2"],
            ["y2"],
            "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }",
        )
        + ip("pre3", "x", "xp3", 6)
        + layer(
            "global", "Pooling", ["xp3"], ["y3"], "pooling_param { pool: AVE global_pooling: true }"
        ),
        dumps=["y", "y2", "y3"],
        losses=["y", "y2", "y3"],
    ),
    # ceil rounding, stride above the kernel, no padding: last windows past the image (MAX
    # -FLT_MAX and mask -1, AVE 0 over a clipped size of 0 (NaN) or below (-0, +0)); cropped
    # off before a loss where they are not finite (Caffe's CPU MAX backward would write their
    # gradient outside the channel). Padding on one side only clips both sides' last window.
    "pooling_past_image": Case(
        lambda rng: {
            "x": rng.normal(size=(2, 3, 6, 5)).astype(np.float32),
            "x5": rng.normal(size=(2, 3, 5, 5)).astype(np.float32),
            "ref": np.zeros((2, 3, 2, 2), np.float32),
        },
        ip("pre", "x", "xp", 5)
        + layer("max", "Pooling", ["xp"], ["y", "mask"],
                "pooling_param { pool: MAX kernel_h: 2 kernel_w: 1 stride: 3 }")
        + layer("crop", "Crop", ["y", "ref"], ["yc"], "crop_param { axis: 2 }")
        + ip("pre2", "x", "xp2", 5)
        + layer("ave", "Pooling", ["xp2"], ["y2"],
                "pooling_param { pool: AVE kernel_h: 2 kernel_w: 1 stride: 3 }")
        + layer("crop2", "Crop", ["y2", "ref"], ["y2c"], "crop_param { axis: 2 }")
        + ip("pre3", "x5", "xp3", 5)
        + layer("ave_signed", "Pooling", ["xp3"], ["y3"],
                "pooling_param { pool: AVE kernel_size: 1 stride: 3 }")
        + ip("pre4", "x", "xp4", 5)
        + layer("max_pad_h", "Pooling", ["xp4"], ["y4"],
                "pooling_param { pool: MAX kernel_h: 3 kernel_w: 1 stride: 3 pad_h: 1 pad_w: 0 }")
        + ip("pre5", "x", "xp5", 5)
        + layer("ave_pad_h", "Pooling", ["xp5"], ["y5"],
                "pooling_param { pool: AVE kernel_h: 3 kernel_w: 1 stride: 3 pad_h: 1 pad_w: 0 }"),
        dumps=["y", "mask", "y2", "y3", "y4", "y5"],
        losses=["yc", "y2c", "y3", "y4", "y5"],
    ),
    "lrn": Case(
        normal(2, 5, 4, 4),
        ip("pre", "x", "xp", 4)
        + layer(
            "lrn", "LRN", ["xp"], ["y"], "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 }"
        )
        + ip("pre2", "x", "xp2", 4)
        + layer(
            "lrn2",
            "LRN",
            ["xp2"],
            ["y2"],
            "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }",
        ),
        dumps=["y", "y2"],
        losses=["y", "y2"],
    ),
    "eltwise_concat_slice": Case(
        normal(2, 3, 4),
        ip("pa", "x", "a", 4)
        + ip("pb", "x", "b", 4)
        + layer(
            "sum",
            "Eltwise",
            ["a", "b"],
            ["s"],
            "eltwise_param { operation: SUM coeff: 0.5 coeff: -2 }",
        )
        + layer("prod", "Eltwise", ["a", "b"], ["p"], "eltwise_param { operation: PROD }")
        + layer("max", "Eltwise", ["a", "b"], ["m"], "eltwise_param { operation: MAX }")
        + layer("concat", "Concat", ["a", "b"], ["c"], "concat_param { axis: 2 }")
        + layer("slice", "Slice", ["c"], ["c1", "c2"], "slice_param { axis: 2 slice_point: 3 }"),
        dumps=["s", "p", "m", "c1", "c2"],
        losses=["s", "p", "m", "c1", "c2"],
    ),
    "softmax_with_loss": Case(
        lambda rng: {
            "x": rng.normal(size=(4, 3, 2)).astype(np.float32),
            "label": np.array([[0, 2], [1, -1], [2, 2], [-1, 0]], np.float32),
        },
        ip("pre", "x", "xp", 2)
        + layer("prob", "Softmax", ["xp"], ["prob"])
        + layer(
            "loss", "SoftmaxWithLoss", ["xp", "label"], ["loss"], "loss_param { ignore_label: -1 }"
        )
        + ip("pre2", "x", "xp2", 2)
        + layer(
            "loss2",
            "SoftmaxWithLoss",
            ["xp2", "label"],
            ["loss2"],
            "loss_param { ignore_label: -1 normalization: BATCH_SIZE }",
        ),
        dumps=["prob"],
        loss_dumps=["loss", "loss2"],
    ),
    "classic_neurons": Case(
        normal(2, 3, 4),
        ip("pre", "x", "xp", 4)
        + layer("relu", "ReLU", ["xp"], ["y"], "relu_param { negative_slope: 0.1 }")
        + ip("pre2", "x", "xp2", 4)
        + layer("sigmoid", "Sigmoid", ["xp2"], ["y2"])
        + ip("pre3", "x", "xp3", 4)
        + layer("tanh", "TanH", ["xp3"], ["y3"]),
        dumps=["y", "y2", "y3"],
        losses=["y", "y2", "y3"],
    ),
    "accuracy": Case(
        lambda rng: {
            "x": rng.normal(size=(6, 4)).astype(np.float32),
            "label": np.array([0, 3, 1, -1, 2, 3], np.float32),
        },
        layer(
            "acc",
            "Accuracy",
            ["x", "label"],
            ["a", "per_class"],
            "accuracy_param { top_k: 2 ignore_label: -1 }",
        )
        + layer("acc1", "Accuracy", ["x", "label"], ["a1"], "accuracy_param { ignore_label: -1 }"),
        dumps=["per_class"],
        loss_dumps=["a", "a1"],
    ),
    "neurons": Case(
        normal(2, 3, 4, 5),
        _NEURON_BODY,
        dumps=_NEURON_TOPS,
        losses=[t for t in _NEURON_TOPS if t != "y_threshold"],
    ),
}
