"""Bring old-syntax nets and solvers up to the current Caffe format, as Caffe does on load.

Nets: V1 ``layers { type: ENUM }`` become ``layer { type: "String" }`` (with
``blobs_lr``/``weight_decay``/``param`` names turned into ``param {}`` specs),
transformation fields inside V1 data params move to ``transform_param``, the
net-level ``input``/``input_dim``/``input_shape`` fields become an ``Input``
layer, and BatchNorm layers with three ``param`` specs get zero multipliers.
Solvers: the ``solver_type`` enum becomes the ``type`` string, and a missing
``snapshot_prefix`` is derived from the solver file's name.

V0 nets (``layers { layer { ... } }``, before 2014) are refused with a pointer
to Caffe's own converter. Each upgraded file is reported by one log line on the
``pipeline_lib`` logger.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.errors import PrototxtError

log = logging.getLogger("pipeline_lib")

_V1 = caffe_pb2.V1LayerParameter

# V1 layer type enum name -> the layer type string that replaced it.
V1_LAYER_TYPES: dict[str, str] = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# Old solver_type enum name -> solver type string.
SOLVER_TYPES: dict[str, str] = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}

# V1 data layer types whose own param once held the transformation fields.
_DATA_PARAM_OF_V1_TYPE: dict[int, str] = {
    _V1.DATA: "data_param",
    _V1.IMAGE_DATA: "image_data_param",
    _V1.WINDOW_DATA: "window_data_param",
}
_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

# Every *_param submessage of V1LayerParameter has a namesake in LayerParameter.
_V1_SUBMESSAGES = tuple(
    f.name
    for f in _V1.DESCRIPTOR.fields
    if f.name.endswith("_param") and f.message_type is not None
)

_SHARE_MODES = {
    _V1.STRICT: caffe_pb2.ParamSpec.STRICT,
    _V1.PERMISSIVE: caffe_pb2.ParamSpec.PERMISSIVE,
}


def v1_layer_type(enum_value: int) -> str:
    """The type string of a V1 ``LayerType`` enum value."""
    name = _V1.LayerType.Name(enum_value)
    return V1_LAYER_TYPES[name]


# --- nets -------------------------------------------------------------------


def net_needs_upgrade(net: caffe_pb2.NetParameter) -> bool:
    """True when `net` uses any syntax that `upgrade_net` rewrites."""
    return bool(
        net.layers
        or net.input
        or net.input_dim
        or net.input_shape
        or any(_is_old_batch_norm(layer) for layer in net.layer)
    )


def upgrade_net(net: caffe_pb2.NetParameter, source: str) -> list[str]:
    """Upgrade `net` in place; return what was upgraded (empty when nothing).

    `source` names the file in errors and in the one log line.
    Raises PrototxtError for V0 nets and for nets that mix ``layer`` and ``layers``.
    """
    done: list[str] = []
    if any(v1.HasField("layer") for v1 in net.layers):
        raise PrototxtError(
            source,
            "uses the V0 layer format (`layers { layer { ... } }`), which is not upgraded "
            "here; convert it with Caffe's upgrade_net_proto_text tool or rewrite it as "
            '`layer { type: "..." }` blocks',
        )
    if _upgrade_data_transformation(net):
        done.append("transformation fields inside data_param")
    if net.layers:
        _upgrade_v1_layers(net, source)
        done.append("V1 `layers { type: ENUM }` blocks")
    if net.input or net.input_dim or net.input_shape:
        _upgrade_input_fields(net, source)
        done.append("net-level input fields")
    if _upgrade_batch_norm(net):
        done.append("BatchNorm params with learning rates")
    if done:
        log.warning(
            "%s uses old Caffe syntax (%s); upgraded it on load to the current format",
            source,
            ", ".join(done),
        )
    return done


def _upgrade_data_transformation(net: caffe_pb2.NetParameter) -> bool:
    """Move scale/mean_file/crop_size/mirror of V1 data layers into transform_param."""
    changed = False
    for v1 in net.layers:
        param_name = _DATA_PARAM_OF_V1_TYPE.get(v1.type)
        if param_name is None or not v1.HasField(param_name):
            continue
        data_param = getattr(v1, param_name)
        for field in _TRANSFORM_FIELDS:
            if data_param.HasField(field):
                setattr(v1.transform_param, field, getattr(data_param, field))
                data_param.ClearField(field)
                changed = True
    return changed


def _upgrade_v1_layers(net: caffe_pb2.NetParameter, source: str) -> None:
    if net.layer:
        raise PrototxtError(
            source,
            "mixes `layer { }` (current format) and `layers { }` (V1 format) blocks; "
            'write every layer as `layer { type: "..." }`',
        )
    upgraded = []
    for v1 in net.layers:
        try:
            upgraded.append(upgrade_v1_layer(v1))
        except ValueError as exc:
            raise PrototxtError(source, f"layers {{ name: {v1.name!r} }}: {exc}") from None
    net.ClearField("layers")
    net.layer.extend(upgraded)


def upgrade_v1_layer(v1: caffe_pb2.V1LayerParameter) -> caffe_pb2.LayerParameter:
    """The current-format LayerParameter equivalent to one V1 layer."""
    layer = caffe_pb2.LayerParameter()
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    if v1.HasField("name"):
        layer.name = v1.name
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        layer.type = v1_layer_type(v1.type)
    layer.blobs.extend(v1.blobs)

    def spec(i: int) -> caffe_pb2.ParamSpec:
        while len(layer.param) <= i:
            layer.param.add()
        return layer.param[i]

    for i, name in enumerate(v1.param):
        spec(i).name = name
    for i, mode in enumerate(v1.blob_share_mode):
        if mode not in _SHARE_MODES:
            raise ValueError(f"unknown blob_share_mode {mode}")
        spec(i).share_mode = _SHARE_MODES[mode]
    for i, lr in enumerate(v1.blobs_lr):
        spec(i).lr_mult = lr
    for i, decay in enumerate(v1.weight_decay):
        spec(i).decay_mult = decay
    layer.loss_weight.extend(v1.loss_weight)
    for name in _V1_SUBMESSAGES:
        if v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))
    return layer


def _upgrade_input_fields(net: caffe_pb2.NetParameter, source: str) -> None:
    """Turn input/input_dim/input_shape into an Input layer placed first."""
    names = list(net.input)
    if net.input_shape or net.input_dim:
        shapes: list[list[int]] = []
        if net.input_shape:
            if len(net.input_shape) != len(names):
                raise PrototxtError(
                    source,
                    f"has {len(names)} `input` names but {len(net.input_shape)} "
                    "`input_shape` blocks; give one shape per input",
                )
            shapes = [list(s.dim) for s in net.input_shape]
        else:
            dims = list(net.input_dim)
            if len(dims) != 4 * len(names):
                raise PrototxtError(
                    source,
                    f"has {len(names)} `input` names but {len(dims)} `input_dim` values; "
                    "give four (num, channels, height, width) per input",
                )
            shapes = [dims[4 * i : 4 * i + 4] for i in range(len(names))]
        input_layer = caffe_pb2.LayerParameter(name="input", type="Input", top=names)
        for dims in shapes:
            input_layer.input_param.shape.add().dim.extend(dims)
        rest = list(net.layer)
        net.ClearField("layer")
        net.layer.append(input_layer)
        net.layer.extend(rest)
    # Without shapes the names are a legacy leftover (old caffemodels): just drop them.
    for field in ("input", "input_shape", "input_dim"):
        net.ClearField(field)


def _is_old_batch_norm(layer: caffe_pb2.LayerParameter) -> bool:
    return layer.type == "BatchNorm" and len(layer.param) == 3


def _upgrade_batch_norm(net: caffe_pb2.NetParameter) -> bool:
    """Old BatchNorm definitions listed 3 params; their statistics must not learn."""
    changed = False
    for layer in net.layer:
        if _is_old_batch_norm(layer):
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
            changed = True
    return changed


# --- solvers ------------------------------------------------------------------


def upgrade_solver(solver: caffe_pb2.SolverParameter, source: str) -> list[str]:
    """Upgrade `solver` in place (solver_type enum, inline V1 nets); return what changed."""
    done: list[str] = []
    if solver.HasField("solver_type"):
        if solver.HasField("type"):
            raise PrototxtError(
                source,
                "sets both `solver_type` (old enum) and `type` (string); keep only "
                f'`type: "{_solver_type_name(solver.solver_type)}"`',
            )
        solver.type = _solver_type_name(solver.solver_type)
        solver.ClearField("solver_type")
        done.append("`solver_type` enum")
    if done:
        log.warning(
            "%s uses old Caffe syntax (%s); upgraded it on load to the current format",
            source,
            ", ".join(done),
        )
    # Caffe leaves inline nets alone; upgrading them too costs nothing and helps.
    inline = [("net_param", solver.net_param)] if solver.HasField("net_param") else []
    if solver.HasField("train_net_param"):
        inline.append(("train_net_param", solver.train_net_param))
    inline += [(f"test_net_param[{i}]", net) for i, net in enumerate(solver.test_net_param)]
    for label, net in inline:
        done += upgrade_net(net, f"{source} ({label})")
    return done


def _solver_type_name(enum_value: int) -> str:
    return SOLVER_TYPES[caffe_pb2.SolverParameter.SolverType.Name(enum_value)]


def default_snapshot_prefix(solver: caffe_pb2.SolverParameter, solver_path: str) -> None:
    """Fill in snapshot_prefix as Caffe does when reading a solver file.

    Missing: the solver file's path without its extension. Naming an existing
    directory: that directory joined with the solver file's stem.
    """
    path = Path(solver_path)
    if not solver.HasField("snapshot_prefix"):
        solver.snapshot_prefix = str(path.with_suffix(""))
        log.info("snapshot_prefix was not set; using %s", solver.snapshot_prefix)
    elif solver.snapshot_prefix and Path(solver.snapshot_prefix).is_dir():
        solver.snapshot_prefix = str(Path(solver.snapshot_prefix) / path.stem)
        log.info("snapshot_prefix is a directory; using %s", solver.snapshot_prefix)
