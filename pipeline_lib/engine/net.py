"""Net: a directed graph of layers built from a NetParameter for one phase.

Follows Caffe's Net: layers are filtered by include/exclude rules on phase,
stage and level; blobs consumed by several layers get Split layers (so
their gradients are summed); in-place layers reuse their bottom blob;
learnable blobs are shared by `param { name }`; loss layers weigh their
first top by 1 unless `loss_weight` says otherwise, and get an unnamed top
when written without one; any layer's top counts in the loss when given a
`loss_weight`. Which layers run backward, and to which bottoms, follows
Caffe's rules (`_plan_backward`); `debug_info` logs Caffe's per-blob means.
The outputs (blobs no later layer reads) are sorted by name, as Caffe keeps
them in a set: its log lines, `caffe test` and pycaffe's `outputs` list them so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from pipeline_lib.core import glog
from pipeline_lib.core.backend import to_host
from pipeline_lib.core.blob import Blob
from pipeline_lib.engine.layers.base import ImageWork, Layer, LayerSetupError, layer_class
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.blobproto import (
    BlobShapeError,
    array_to_blob_proto,
    blob_proto_to_array,
    legacy_shape_fits,
)


class NetError(ValueError):
    """The net's structure or its weights do not fit together."""


#: the name Caffe gives a top it adds to a loss layer written without one
AUTOMATIC_TOP = "(automatic)"


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
        self._top_loss_weights: list[list[float]] = []
        self._written_loss_weights: list[list[float]] = []  # as _top_loss_weights, if written
        self.loss_weights: dict[str, float] = {}
        self.learnable_params: list[Blob] = []
        self.params_lr: list[float] = []
        self.params_weight_decay: list[float] = []
        self._param_owner_by_name: dict[str, tuple[Blob, caffe_pb2.ParamSpec]] = {}
        self._channels_last = channels_last_blobs(self.param) if xp is np else set()
        #: log Caffe's per-blob means in forward and backward (the solver sets it per iteration)
        self.debug_info = bool(self.param.debug_info)
        self.log: glog.GlogLogger | None = None  # None: the process's default logger
        available: dict[str, None] = {}  # blobs no later layer reads: the outputs
        for layer_param in self.param.layer:
            self._add_layer(layer_param, available)
        self.output_blob_names = sorted(available)
        for name in self.output_blob_names:
            self.loss_weights.setdefault(name, 0.0)
        self._plan_backward()

    # -- construction ------------------------------------------------------------
    def _add_layer(self, lp: caffe_pb2.LayerParameter, available: dict[str, None]) -> None:
        if len(lp.propagate_down) and len(lp.propagate_down) != len(lp.bottom):
            raise NetError(f"layer {lp.name!r} ({lp.type}): propagate_down is given "
                           f"{len(lp.propagate_down)} time(s) but the layer has {len(lp.bottom)} "
                           "bottom(s); give it once per bottom, or not at all")
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
            available.pop(name, None)
        tops = []
        for name in lp.top:
            available[name] = None
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
        wanted = cls.num_top[0] or 0
        if cls.is_loss and len(tops) < wanted:
            # Caffe's automatic tops: they hold the loss but no layer can read them and they
            # are not net outputs, so they stay out of `blobs`.
            tops.extend(Blob((), self.xp, self.dtype, name=AUTOMATIC_TOP)
                        for _ in range(wanted - len(tops)))
        if len(lp.loss_weight) and len(lp.loss_weight) != len(tops):
            raise NetError(f"layer {lp.name!r} ({lp.type}): loss_weight is given "
                           f"{len(lp.loss_weight)} time(s) but the layer has {len(tops)} top(s); "
                           "give it once per top, or not at all")
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
        top_weights = []
        for j, top in enumerate(tops):
            w = float(weights[j]) if j < len(weights) else 0.0
            top_weights.append(w)
            if w:
                self._loss_tops.append((top, w))
                if top.name != AUTOMATIC_TOP:
                    self.loss_weights[top.name] = w
        self._top_loss_weights.append(top_weights)
        self._written_loss_weights.append(top_weights if len(lp.loss_weight) else [0.0] * len(tops))

        self._register_params(layer, lp)
        self._check_name_unique_where_it_matters(lp.name, layer)
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
        """Caffe's rules for which layers run backward and to which bottoms.

        Forward through the net: a layer needs backward when a bottom blob does, or when
        one of its params has lr_mult > 0; its tops then need backward too. A bottom gets
        a gradient when its blob needs one and the layer's `propagate_down` allows it.
        Backward through the net (by blob name, as Caffe): a layer none of whose tops
        carries a loss weight or feeds a loss skips backward, and so does one whose every
        top is a blob no later layer sends a gradient to. `force_backward` then makes every
        layer run backward, to every bottom its type allows (not a loss layer's labels).

        A top with a written `loss_weight` that later layers also read is a loss and a bottom
        at once: Caffe counts the loss as one more reader (its Split carries the weight), so
        the top's gradient is the weight plus what the readers send back. A loss layer's
        implicit weight of 1 gets no such reader: if others read its top, it gets only
        their gradient (none at all when they send none), as in Caffe.
        """
        blob_needs: set[int] = set()
        need: list[bool] = []
        down: list[list[bool]] = []
        self._param_propagate_down: list[list[bool]] = []
        for layer, bottoms, tops in zip(self.layers, self.bottoms, self.tops):
            lp = layer.param
            allowed = list(lp.propagate_down) or [True] * len(bottoms)
            down.append([id(b) in blob_needs and bool(ok) for b, ok in zip(bottoms, allowed)])
            specs = [lp.param[k] if k < len(lp.param) else caffe_pb2.ParamSpec()
                     for k in range(len(layer.blobs))]
            learns = [spec.lr_mult > 0 for spec in specs]
            self._param_propagate_down.append(learns)
            need.append(any(id(b) in blob_needs for b in bottoms) or any(learns))
            if need[-1]:
                blob_needs.update(id(t) for t in tops)

        under_loss: set[str] = set()
        no_gradient: set[str] = set()
        for i in range(len(self.layers) - 1, -1, -1):
            tops, bottoms = self.tops[i], self.bottoms[i]
            feeds_loss = any(w != 0 or t.name in under_loss
                             for t, w in zip(tops, self._top_loss_weights[i]))
            own = self._written_loss_weights[i]
            if need[i] and all(t.name in no_gradient and not w for t, w in zip(tops, own)):
                need[i] = False
                down[i] = [False] * len(bottoms)
            if not feeds_loss:
                need[i] = False
            for j, b in enumerate(bottoms):
                if feeds_loss:
                    under_loss.add(b.name)
                else:
                    down[i][j] = False
                if not down[i][j]:
                    no_gradient.add(b.name)

        if self.param.force_backward:
            for i, layer in enumerate(self.layers):
                need[i] = True
                down[i] = [d or layer.allow_force_backward(j) for j, d in enumerate(down[i])]
                self._param_propagate_down[i] = [True] * len(layer.blobs)
        self._layer_needs_backward = need
        self._propagate_down = down
        # written loss weights to add to a top's gradient after its readers wrote it
        self._weights_after_readers: list[list[tuple[Blob, float]]] = [[] for _ in self.layers]
        for i, (tops, own) in enumerate(zip(self.tops, self._written_loss_weights)):
            for top, w in zip(tops, own):
                if w and any(need[k] and down[k][m] and b is top
                             for k in range(i + 1, len(self.layers))
                             for m, b in enumerate(self.bottoms[k])):
                    self._weights_after_readers[i].append((top, w))

    @property
    def layer_needs_backward(self) -> list[bool]:
        """Per layer, whether backward runs it (Caffe's layer_need_backward)."""
        return list(self._layer_needs_backward)

    @property
    def bottom_needs_backward(self) -> list[list[bool]]:
        """Per layer and bottom, whether backward computes its gradient."""
        return [list(d) for d in self._propagate_down]

    # -- running ------------------------------------------------------------------
    def forward(self) -> float:
        """Run every layer; return the weighted sum of the loss tops.

        Consecutive layers whose forward can be cut by images (`Layer.forward_images`:
        convolution, pooling) and see batches of one size run as one split over the
        lanes, each lane taking its images through all of them: one hand-over instead of
        one per layer, and a lane's images stay in its core's cache from layer to layer.
        A value's operations are the same as layer by layer.
        """
        def prepare(i: int) -> ImageWork | None:
            bottoms, tops, layer = self.bottoms[i], self.tops[i], self.layers[i]
            if (not bottoms or self.debug_info
                    or type(layer).forward_images is Layer.forward_images):
                return None  # forward_layer reshapes and runs it
            layer.reshape(bottoms, tops)
            return layer.forward_images(bottoms, tops)

        self._in_runs(range(len(self.layers)), prepare, self.forward_layer, "forward")
        return self.loss()

    def _in_runs(self, order, prepare: Callable[[int], ImageWork | None],
                 alone: Callable[[int], None], stage: str) -> None:
        """Each layer of `order` in turn: its image work (`prepare`) joins the run of
        those before it, or, when it has none, the run is done and `alone` runs it."""
        run: list[tuple[int, ImageWork]] = []
        for i in order:
            try:
                parts = prepare(i)
            except MemoryError as e:
                raise _naming_layer(e, self.layers[i].param, stage) from e
            self._extend_run(run, i, parts, stage)
            if parts is None:
                alone(i)
        self._finish_run(run, stage)

    def _extend_run(self, run: list[tuple[int, ImageWork]], i: int, parts: ImageWork | None,
                    stage: str) -> None:
        """Add layer i's image work to the run, running the run first when layer i cannot
        join it (no image work, or another batch size)."""
        if run and (parts is None
                    or self.bottoms[i][0].shape[0] != self.bottoms[run[0][0]][0].shape[0]):
            self._finish_run(run, stage)
        if parts is not None:
            run.append((i, parts))

    def _finish_run(self, run: list[tuple[int, ImageWork]], stage: str) -> None:
        """The prepared layers of a run in one split over their images; the run is emptied."""
        if not run:
            return
        first = run[0][0]
        try:
            ImageWork.run(self.xp, self.bottoms[first][0].shape[0], [w for _, w in run])
        except MemoryError as e:
            raise _naming_layer(e, self.layers[first].param, stage) from e
        run.clear()

    def forward_layer(self, i: int) -> None:
        bottoms, tops = self.bottoms[i], self.tops[i]
        try:
            self.layers[i].reshape(bottoms, tops)
            self.layers[i].forward(bottoms, tops)
        except MemoryError as e:
            raise _naming_layer(e, self.layers[i].param, "forward") from e
        if self.debug_info:
            self._forward_debug_info(i)

    def loss(self) -> float:
        total = 0.0
        for blob, weight in self._loss_tops:
            total += weight * float(blob.data.sum())
        return total

    def backward(self) -> None:
        """Every layer's backward, last to first; runs of layers that offer
        `Layer.backward_images` share one split, as in `forward`."""
        self.seed_loss_diffs()

        def prepare(i: int) -> ImageWork | None:
            if not self.bottoms[i] or self.debug_info or self._weights_after_readers[i]:
                return None
            return self.layers[i].backward_images(self.tops[i], self._propagate_down[i],
                                                  self.bottoms[i])

        order = [i for i in range(len(self.layers) - 1, -1, -1) if self._layer_needs_backward[i]]
        self._in_runs(order, prepare, self.backward_layer, "backward")
        if self.debug_info:
            self._params_norm_info()

    def seed_loss_diffs(self) -> None:
        """Set each loss top's diff to its loss weight: where backward starts."""
        for blob, weight in self._loss_tops:
            blob.diff[...] = weight

    def backward_layer(self, i: int) -> None:
        if self._layer_needs_backward[i]:
            for top, w in self._weights_after_readers[i]:
                top.diff[...] += w
            try:
                self.layers[i].backward(self.tops[i], self._propagate_down[i], self.bottoms[i])
            except MemoryError as e:
                raise _naming_layer(e, self.layers[i].param, "backward") from e
            if self.debug_info:
                self._backward_debug_info(i)

    # -- debug_info: Caffe's lines, absolute means of each blob's data or diff ----------
    def _logger(self) -> glog.GlogLogger:
        return self.log if self.log is not None else glog.default_logger()

    def _forward_debug_info(self, i: int) -> None:
        name, layer = self.layer_names[i], self.layers[i]
        for top in self.tops[i]:
            self._logger().info(f"    [Forward] Layer {name}, top blob {top.name} data: "
                          f"{_abs_mean(top.data)}")
        for k, blob in enumerate(layer.blobs):
            spec = layer.param.param[k] if k < len(layer.param.param) else None
            shown = spec.name if spec is not None and spec.name else str(k)
            self._logger().info(f"    [Forward] Layer {name}, param blob {shown} data: "
                          f"{_abs_mean(blob.data)}")

    def _backward_debug_info(self, i: int) -> None:
        name, layer = self.layer_names[i], self.layers[i]
        for bottom, down in zip(self.bottoms[i], self._propagate_down[i]):
            if down:
                self._logger().info(f"    [Backward] Layer {name}, bottom blob {bottom.name} diff: "
                              f"{_abs_mean(bottom.diff)}")
        for k, (blob, down) in enumerate(zip(layer.blobs, self._param_propagate_down[i])):
            if down:
                self._logger().info(f"    [Backward] Layer {name}, param blob {k} diff: "
                              f"{_abs_mean(blob.diff)}")

    def _params_norm_info(self) -> None:
        xp = self.xp
        sums = [0.0, 0.0, 0.0, 0.0]  # L1 data, L1 diff, squared L2 data, squared L2 diff
        for blob in self.learnable_params:
            for k, values in enumerate((blob.data, blob.diff)):
                sums[k] += float(xp.abs(values).sum(dtype=np.float64))
                sums[k + 2] += float((values.astype(np.float64) ** 2).sum())
        g = _g6
        self._logger().error(
            f"    [Backward] All net params (data, diff): L1 norm = ({g(sums[0])}, "
            f"{g(sums[1])}); L2 norm = ({g(sums[2] ** 0.5)}, {g(sums[3] ** 0.5)})")

    def forward_backward(self) -> float:
        loss = self.forward()
        self.backward()
        return loss

    def _check_name_unique_where_it_matters(self, name: str, layer: Layer) -> None:
        """Caffe lets two layers share a name (its own mnist_autoencoder does), but weights and
        resume state are matched by layer name, so a repeated name may not hold either."""
        if name not in self.layer_names:
            return
        twin = self.layers[self.layer_names.index(name)]
        if any(x.blobs or type(x).get_state is not Layer.get_state for x in (twin, layer)):
            raise NetError(f"two layers are named {name!r} and one holds weights or state, "
                           "which are matched by layer name; give them different names")

    def clear_param_diffs(self) -> None:
        for blob in self.learnable_params:
            blob.clear_diff()

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


def _g6(value: float) -> str:
    """A number as C++ streams print a float by default (6 significant digits)."""
    return format(float(value), ".6g")


def _abs_mean(values) -> str:
    return _g6(float(abs(values).sum(dtype=np.float64)) / max(values.size, 1))


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
