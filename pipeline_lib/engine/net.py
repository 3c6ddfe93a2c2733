"""Net: a directed graph of layers built from a NetParameter for one phase.

Follows Caffe's Net: layers are filtered by include/exclude rules on phase,
stage and level; blobs consumed by several layers get Split layers (so
their gradients are summed); in-place layers reuse their bottom blob;
learnable blobs are shared by `param { name }`; loss layers weigh their
first top by 1 unless `loss_weight` says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from pipeline_lib.core.backend import to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import Layer, LayerSetupError, layer_class
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import (
    BlobShapeError,
    array_to_blob_proto,
    blob_proto_to_array,
    legacy_shape_fits,
)


class NetError(ValueError):
    """The net's structure or its weights do not fit together."""


def state_meets_rule(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    """Caffe's NetStateRule semantics: every condition the rule states must hold."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    if any(s not in stages for s in rule.stage):
        return False
    return not any(s in stages for s in rule.not_stage)


def filter_net(param: caffe_pb2.NetParameter, state: caffe_pb2.NetState) -> caffe_pb2.NetParameter:
    """A copy of `param` holding only the layers that `state` includes."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    for layer in param.layer:
        if layer_included(layer, state):
            out.layer.add().CopyFrom(layer)
    return out


def layer_included(layer: caffe_pb2.LayerParameter, state: caffe_pb2.NetState) -> bool:
    """Whether a net in `state` has `layer` (its include or exclude rules)."""
    if layer.include and layer.exclude:
        raise NetError(f"layer {layer.name!r} specifies both include and exclude rules")
    if layer.include:
        return any(state_meets_rule(state, r) for r in layer.include)
    return not any(state_meets_rule(state, r) for r in layer.exclude)


def split_blob_name(blob: str, layer: str, top_index: int, k: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{k}"


def insert_splits(param: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """Insert Split layers after every top that more than one layer consumes."""
    # blob name -> (layer index, top index) of its latest writer
    producer: dict[str, tuple[int, int]] = {}
    consumers: dict[tuple[int, int], int] = {}
    bottom_source: dict[tuple[int, int], tuple[int, int]] = {}
    for i, layer in enumerate(param.layer):
        for j, name in enumerate(layer.bottom):
            if name not in producer:
                continue  # reported with context when the net is built
            src = producer[name]
            bottom_source[(i, j)] = src
            consumers[src] = consumers.get(src, 0) + 1
        for j, name in enumerate(layer.top):
            producer[name] = (i, j)

    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    del out.layer[:]
    next_split: dict[tuple[int, int], int] = {}
    for i, layer in enumerate(param.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j in range(len(layer.bottom)):
            src = bottom_source.get((i, j))
            if src is not None and consumers[src] > 1:
                k = next_split.get(src, 0)
                next_split[src] = k + 1
                src_layer = param.layer[src[0]]
                new.bottom[j] = split_blob_name(layer.bottom[j], src_layer.name, src[1], k)
        for j, name in enumerate(layer.top):
            n = consumers.get((i, j), 0)
            if n > 1:
                split = out.layer.add()
                split.name = f"{name}_{layer.name}_{j}_split"
                split.type = "Split"
                split.bottom.append(name)
                split.top.extend(split_blob_name(name, layer.name, j, k) for k in range(n))
    return out


def channels_last_blobs(param: caffe_pb2.NetParameter) -> set[str]:
    """Names of the blobs to keep channels-last: made by a layer that prefers it, read only
    by layers that accept it (in-place layers count as readers of the blob they rewrite)."""
    preferred: set[str] = set()
    refused: set[str] = set()
    for lp in param.layer:
        try:
            cls = layer_class(lp.type)
        except ValueError:
            return set()  # reported with context when the net is built
        if not cls.accepts_channels_last:
            refused.update(lp.bottom)
        if cls.prefers_channels_last:
            preferred.update(t for t in lp.top if t not in lp.bottom)
    return preferred - refused


class Net:
    """Layers wired by blob names, with forward, backward and weight I/O."""

    def __init__(self, param: caffe_pb2.NetParameter, phase: int = caffe_pb2.TRAIN, *,
                 xp=np, dtype=np.float32, rng: np.random.Generator | None = None,
                 stages: Iterable[str] = (), level: int = 0):
        if len(param.layers):
            param = _upgraded(param, param.name or "net")
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.phase = phase
        self.rng = rng if rng is not None else np.random.default_rng(0)
        state = caffe_pb2.NetState(phase=phase, level=level, stage=list(stages))
        if param.HasField("state"):
            state.level = param.state.level if not level else level
            state.stage.extend(s for s in param.state.stage if s not in state.stage)
        self.name = param.name
        self.param = insert_splits(filter_net(param, state))

        self.layers: list[Layer] = []
        self.layer_names: list[str] = []
        self.blobs: dict[str, Blob] = {}
        self.bottoms: list[list[Blob]] = []
        self.tops: list[list[Blob]] = []
        self._loss_tops: list[tuple[Blob, float]] = []
        self.loss_weights: dict[str, float] = {}
        self.learnable_params: list[Blob] = []
        self.params_lr: list[float] = []
        self.params_weight_decay: list[float] = []
        self._param_owner_by_name: dict[str, tuple[Blob, caffe_pb2.ParamSpec]] = {}
        self._channels_last = channels_last_blobs(self.param) if xp is np else set()
        consumed: set[str] = set()
        for layer_param in self.param.layer:
            self._add_layer(layer_param, consumed)
        self.output_blob_names = [n for n in self.blobs if n not in consumed]
        for name in self.output_blob_names:
            self.loss_weights.setdefault(name, 0.0)
        self._plan_backward()

    # -- construction ------------------------------------------------------------
    def _add_layer(self, lp: caffe_pb2.LayerParameter, consumed: set[str]) -> None:
        if lp.name in self.layer_names:
            raise NetError(f"two layers are named {lp.name!r}")
        try:
            cls = layer_class(lp.type)
        except ValueError as e:
            raise NetError(f"layer {lp.name!r}: {e}") from None
        layer = cls(lp, self.phase, self.xp, self.rng, self.dtype)
        bottoms = []
        for name in lp.bottom:
            if name not in self.blobs:
                have = ", ".join(self.blobs) or "none"
                raise NetError(f"layer {lp.name!r} ({lp.type}): bottom blob {name!r} is produced "
                               f"by no layer before it (blobs so far: {have})")
            bottoms.append(self.blobs[name])
            consumed.add(name)
        tops = []
        for name in lp.top:
            if name in lp.bottom:  # in place
                tops.append(self.blobs[name])
            elif name in self.blobs:
                raise NetError(f"layer {lp.name!r}: top blob {name!r} is already produced by "
                               "another layer (only in-place use, top == bottom, may reuse a name)")
            else:
                blob = Blob((), self.xp, self.dtype, name=name)
                blob.channels_last = name in self._channels_last
                self.blobs[name] = blob
                tops.append(blob)
        try:
            layer.check_counts(bottoms, tops)
            layer.setup(bottoms, tops)
            layer.reshape(bottoms, tops)
        except LayerSetupError as e:
            raise NetError(str(e)) from None
        except MemoryError as e:
            raise _naming_layer(e, lp, "setting up") from e
        except (ValueError, IndexError) as e:
            shapes = ", ".join(f"{b.name}{list(b.shape)}" for b in bottoms)
            raise NetError(f"layer {lp.name!r} ({lp.type}) with bottoms {shapes}: {e}") from e

        weights = list(lp.loss_weight)
        if not weights and layer.is_loss:
            weights = [1.0]
        for j, top in enumerate(tops):
            w = weights[j] if j < len(weights) else 0.0
            if w:
                self._loss_tops.append((top, float(w)))
                self.loss_weights[top.name] = float(w)

        self._register_params(layer, lp)
        self.layers.append(layer)
        self.layer_names.append(lp.name)
        self.bottoms.append(bottoms)
        self.tops.append(tops)

    def _register_params(self, layer: Layer, lp: caffe_pb2.LayerParameter) -> None:
        if len(lp.param) > len(layer.blobs):
            raise NetError(f"layer {lp.name!r} has {len(lp.param)} param specs but only "
                           f"{len(layer.blobs)} learnable blobs")
        for i, blob in enumerate(layer.blobs):
            spec = lp.param[i] if i < len(lp.param) else caffe_pb2.ParamSpec()
            if spec.name and spec.name in self._param_owner_by_name:
                owner, owner_spec = self._param_owner_by_name[spec.name]
                if owner.shape != blob.shape:
                    raise NetError(f"layer {lp.name!r}: shared param {spec.name!r} has shape "
                                   f"{list(blob.shape)} here but {list(owner.shape)} in its owner")
                if spec.HasField("lr_mult") and spec.lr_mult != owner_spec.lr_mult:
                    raise NetError(f"layer {lp.name!r}: shared param {spec.name!r} sets lr_mult "
                                   f"{spec.lr_mult} but its owner has {owner_spec.lr_mult}")
                layer.blobs[i] = owner
                continue
            blob.name = f"{lp.name}[{i}]"
            if spec.name:
                self._param_owner_by_name[spec.name] = (blob, spec)
            self.learnable_params.append(blob)
            self.params_lr.append(spec.lr_mult)
            self.params_weight_decay.append(spec.decay_mult)

    def _plan_backward(self) -> None:
        """Decide which layers run backward and to which bottoms they propagate."""
        lr_of = {id(b): lr for b, lr in zip(self.learnable_params, self.params_lr)}
        needs: set[int] = set()  # ids of blobs whose diff is wanted
        self._layer_needs_backward = []
        for layer, bottoms, tops in zip(self.layers, self.bottoms, self.tops):
            need = any(id(b) in needs for b in bottoms) or any(
                lr_of.get(id(p), 0.0) != 0 for p in layer.blobs) or self.param.force_backward
            self._layer_needs_backward.append(need)
            if need:
                needs.update(id(t) for t in tops)
        # Only layers that lead to a loss need backward.
        under_loss = {id(b) for b, _ in self._loss_tops}
        self._propagate_down: list[list[bool]] = [[] for _ in self.layers]
        for idx in range(len(self.layers) - 1, -1, -1):
            lp = self.layers[idx].param
            tops, bottoms = self.tops[idx], self.bottoms[idx]
            leads_to_loss = any(id(t) in under_loss for t in tops) or self.param.force_backward
            if not leads_to_loss:
                self._layer_needs_backward[idx] = False
            else:
                under_loss.update(id(b) for b in bottoms)
            down = []
            for j, b in enumerate(bottoms):
                wanted = id(b) in needs or self.param.force_backward
                if j < len(lp.propagate_down):
                    wanted = wanted and lp.propagate_down[j]
                down.append(bool(wanted and self._layer_needs_backward[idx]))
            self._propagate_down[idx] = down

    # -- running ------------------------------------------------------------------
    def forward(self) -> float:
        """Run every layer; return the weighted sum of the loss tops."""
        for i in range(len(self.layers)):
            self.forward_layer(i)
        return self.loss()

    def forward_layer(self, i: int) -> None:
        bottoms, tops = self.bottoms[i], self.tops[i]
        try:
            self.layers[i].reshape(bottoms, tops)
            self.layers[i].forward(bottoms, tops)
        except MemoryError as e:
            raise _naming_layer(e, self.layers[i].param, "forward") from e

    def loss(self) -> float:
        total = 0.0
        for blob, weight in self._loss_tops:
            total += weight * float(blob.data.sum())
        return total

    def backward(self) -> None:
        self.seed_loss_diffs()
        for i in range(len(self.layers) - 1, -1, -1):
            self.backward_layer(i)

    def seed_loss_diffs(self) -> None:
        """Set each loss top's diff to its loss weight: where backward starts."""
        for blob, weight in self._loss_tops:
            blob.diff[...] = weight

    def backward_layer(self, i: int) -> None:
        if self._layer_needs_backward[i]:
            try:
                self.layers[i].backward(self.tops[i], self._propagate_down[i], self.bottoms[i])
            except MemoryError as e:
                raise _naming_layer(e, self.layers[i].param, "backward") from e

    def forward_backward(self) -> float:
        loss = self.forward()
        self.backward()
        return loss

    def clear_param_diffs(self) -> None:
        for blob in self.learnable_params:
            blob.diff[...] = 0

    def layer(self, name: str) -> Layer:
        try:
            return self.layers[self.layer_names.index(name)]
        except ValueError:
            raise KeyError(f"net {self.name!r} has no layer {name!r}") from None

    @property
    def params(self) -> dict[str, list[Blob]]:
        """Learnable blobs by layer name (pycaffe's `net.params`)."""
        return {n: layer.blobs for n, layer in zip(self.layer_names, self.layers) if layer.blobs}

    # -- weights ------------------------------------------------------------------
    def share_trained_layers_with(self, other: Net) -> None:
        """Use `other`'s learnable blobs (same Blob objects) for layers of the same name."""
        for name, layer in zip(self.layer_names, self.layers):
            if not layer.blobs or name not in other.layer_names:
                continue
            source = other.layer(name)
            if len(source.blobs) != len(layer.blobs):
                raise NetError(f"layer {name!r}: {len(layer.blobs)} blobs here but "
                               f"{len(source.blobs)} in net {other.name!r}")
            for i, (mine, theirs) in enumerate(zip(layer.blobs, source.blobs)):
                if mine.shape != theirs.shape:
                    raise NetError(f"layer {name!r} blob {i}: shape {list(mine.shape)} here but "
                                   f"{list(theirs.shape)} in net {other.name!r}")
                layer.blobs[i] = theirs

    def copy_trained_layers_from(self, param: caffe_pb2.NetParameter, source: str = "weights"
                                 ) -> list[str]:
        """Load blobs by layer name from a .caffemodel message; returns the layers copied."""
        if len(param.layers) and not len(param.layer):
            param = _upgraded(param, source)
        copied = []
        for lp in param.layer:
            if lp.name not in self.layer_names or not len(lp.blobs):
                continue
            layer = self.layer(lp.name)
            if len(lp.blobs) != len(layer.blobs):
                raise NetError(f"{source}: layer {lp.name!r} has {len(lp.blobs)} blobs but the net "
                               f"expects {len(layer.blobs)}")
            for i, (bp, blob) in enumerate(zip(lp.blobs, layer.blobs)):
                try:
                    values = blob_proto_to_array(bp)
                except BlobShapeError as e:
                    raise NetError(f"{source}: layer {lp.name!r} blob {i}: {e}; the net expects "
                                   f"shape {list(blob.shape)}") from None
                if values.shape != blob.shape and not legacy_shape_fits(bp, blob.shape):
                    raise NetError(f"{source}: layer {lp.name!r} blob {i} has shape "
                                   f"{list(values.shape)} but the net expects {list(blob.shape)}")
                blob.data[...] = self.xp.asarray(values.reshape(blob.shape), dtype=blob.dtype)
            copied.append(lp.name)
        return copied

    def to_proto(self, write_diff: bool = False) -> caffe_pb2.NetParameter:
        """The net with its blobs in Caffe's layout, as a .caffemodel holds it."""
        out = caffe_pb2.NetParameter()
        out.name = self.name
        for layer in self.layers:
            if layer.type == "Split":
                continue
            lp = out.layer.add()
            lp.CopyFrom(layer.param)
            del lp.blobs[:]
            lp.phase = self.phase
            for blob in layer.blobs:
                array_to_blob_proto(to_host(blob.data), lp.blobs.add(),
                                    diff=to_host(blob.diff) if write_diff else None)
        return out

    # -- resumable state ---------------------------------------------------------------
    def get_state(self) -> dict:
        return {n: s for n, layer in zip(self.layer_names, self.layers) if (s := layer.get_state())}

    def set_state(self, state: dict) -> None:
        for name, layer_state in state.items():
            if name in self.layer_names:
                self.layer(name).set_state(layer_state)

    def close(self) -> None:
        for layer in self.layers:
            close = getattr(layer, "close", None)
            if close is not None:
                close()


def _naming_layer(error: MemoryError, lp: caffe_pb2.LayerParameter, when: str) -> MemoryError:
    """An allocation that failed, as a MemoryError naming the layer (numpy's own message
    says how much it asked for and the array's shape)."""
    detail = str(error) or type(error).__name__
    return MemoryError(f"layer {lp.name!r} ({lp.type}), {when}: {detail}")


def _upgraded(param: caffe_pb2.NetParameter, source: str) -> caffe_pb2.NetParameter:
    from pipeline_lib.proto.upgrade import upgrade_net

    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(param)
    upgrade_net(copy, source)
    return copy
