"""Score a trained classifier on a labelled database: accuracy, top-k, per class, confusion.

The model's own TEST net does the work, as `caffe test` would, except that
the records are read here (pipeline_lib.data.db + datum) in key order, each
exactly once, in batches (the last one may be short): the TEST-phase Data
layer is swapped for an Input layer with the same tops, and its
transform_param becomes a `Preprocessor`. The class scores are the first
bottom of the net's Accuracy layer (else of the loss layer that reads the
labels); the loss layers still give the loss, averaged over records.

Top-k follows Caffe's Accuracy layer: a class scoring the same as the true
class counts as ranked above it. The confusion matrix counts the arg-max
class (the first of ties); rows are true classes, columns predicted ones.
A deploy net (Input ... Softmax) is scored the same way by `evaluate_deploy`.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline_lib.core.backend import Device
from pipeline_lib.core.fsutil import atomic_write_bytes
from pipeline_lib.data.db import DatabaseReader, open_db
from pipeline_lib.engine.layers.data_layer import DataLayer, data_layer_class
from pipeline_lib.engine.layers.python_layer import modules_beside
from pipeline_lib.preprocess import Preprocessor, find_transform_param
from pipeline_lib.proto import caffe_pb2
from pipeline_lib.proto.datum import datum_to_array, parse_datum

log = logging.getLogger(__name__)

#: scores (N x K) and the batch's summed loss (None when the net has none)
ForwardFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, float | None]]


class EvaluationError(ValueError):
    """A net or database that cannot be evaluated as asked."""


# -- the numbers ------------------------------------------------------------------------------
def top_k_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per row: fewer than `k` other classes score at least as high as the true class."""
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    true = scores[np.arange(len(labels)), labels]
    at_least = (scores >= true[:, None]).sum(axis=1) - 1  # the true class itself not counted
    return at_least < k


def confusion_frame(counts: np.ndarray, class_names: Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """A K x K count matrix as a DataFrame: index "true", columns "predicted"."""
    k = counts.shape[0]
    names = list(class_names) if class_names is not None else [str(c) for c in range(k)]
    if len(names) != k:
        raise EvaluationError(f"{len(names)} class names for {k} classes")
    return pd.DataFrame(counts, index=pd.Index(names, name="true"),
                        columns=pd.Index(names, name="predicted"))


@dataclass(frozen=True)
class Evaluation:
    """What scoring `count` records gave."""

    count: int
    top_k: dict[int, float]  # k -> fraction of records whose label is in the top k
    confusion: pd.DataFrame
    loss: float | None = None

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy (Caffe's Accuracy layer rule)."""
        if 1 in self.top_k:
            return self.top_k[1]
        return float(np.trace(self.confusion.to_numpy())) / max(self.count, 1)

    @property
    def per_class_accuracy(self) -> pd.Series:
        """Per true class: the fraction predicted as that class (NaN for an absent class)."""
        counts = self.confusion.to_numpy()
        totals = counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.diag(counts) / totals
        return pd.Series(values, index=self.confusion.index, name="accuracy")

    def to_dict(self) -> dict:
        """JSON-ready numbers (NaN becomes None)."""
        return {
            "count": self.count,
            "accuracy": self.accuracy,
            "top_k": {str(k): v for k, v in sorted(self.top_k.items())},
            "loss": self.loss,
            "per_class_accuracy": {str(name): (None if math.isnan(v) else float(v))
                                   for name, v in self.per_class_accuracy.items()},
            "per_class_count": {str(name): int(n)
                                for name, n in self.confusion.sum(axis=1).items()},
        }


class Tally:
    """Running counts over batches, so no score array of the whole database is kept."""

    def __init__(self, num_classes: int, top_k: Sequence[int] = (1, 5)):
        self.num_classes = int(num_classes)
        self.ks = sorted({int(k) for k in top_k if 0 < int(k) <= self.num_classes} or {1})
        self.counts = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.hits = dict.fromkeys(self.ks, 0)
        self.count = 0
        self.loss_sum: float | None = None

    def add(self, scores: np.ndarray, labels: np.ndarray, loss_sum: float | None = None) -> None:
        scores = np.asarray(scores).reshape(len(labels), -1)
        labels = np.asarray(labels).astype(np.int64)
        if scores.shape[1] != self.num_classes:
            raise EvaluationError(f"scores have {scores.shape[1]} classes, expected "
                                  f"{self.num_classes}")
        bad = (labels < 0) | (labels >= self.num_classes)
        if bad.any():
            raise EvaluationError(f"label {int(labels[bad][0])} is not a class index in "
                                  f"[0, {self.num_classes})")
        predicted = scores.argmax(axis=1)
        np.add.at(self.counts, (labels, predicted), 1)
        for k in self.ks:
            self.hits[k] += int(top_k_hits(scores, labels, k).sum())
        self.count += len(labels)
        if loss_sum is not None:
            self.loss_sum = (self.loss_sum or 0.0) + float(loss_sum)

    def result(self, class_names: Sequence[str] | None = None) -> Evaluation:
        n = max(self.count, 1)
        return Evaluation(
            count=self.count,
            top_k={k: h / n for k, h in self.hits.items()},
            confusion=confusion_frame(self.counts, class_names),
            loss=None if self.loss_sum is None else self.loss_sum / n,
        )


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, top_k: Sequence[int] = (1, 5),
                    class_names: Sequence[str] | None = None) -> Evaluation:
    """The evaluation of scores (N x K) already in memory."""
    scores = np.asarray(scores)
    tally = Tally(scores.reshape(len(labels), -1).shape[1], top_k)
    tally.add(scores, labels)
    return tally.result(class_names)


# -- reading records ----------------------------------------------------------------------------
def score_records(reader: DatabaseReader, preprocessor: Preprocessor, forward: ForwardFn,
                  tally_for: Callable[[int], Tally], *, batch_size: int,
                  color: bool | None = None, limit: int | None = None) -> Tally:
    """Stream the database's records in key order through `forward`, `batch_size` at a time."""
    from pipeline_lib.core.progress import Progress

    total = len(reader) if limit is None else min(limit, len(reader))
    tally: Tally | None = None
    images: list[np.ndarray] = []
    labels: list[int] = []

    def flush() -> None:
        nonlocal tally
        scores, loss_sum = forward(preprocessor(np.stack(images)), np.asarray(labels))
        if tally is None:
            tally = tally_for(scores.reshape(len(labels), -1).shape[1])
        tally.add(scores, np.asarray(labels), loss_sum)
        images.clear()
        labels.clear()

    with Progress(f"scoring {reader.path}", total=total, unit="records", logger=log) as progress:
        for i, (key, value) in enumerate(reader):
            if i == total:
                break
            where = f"{reader.path} key {key.decode(errors='replace')}"
            datum = parse_datum(value, where)
            image = datum_to_array(datum, color=color, where=where)
            images.append(preprocessor.fit(image, where))
            labels.append(int(datum.label))
            if len(images) == batch_size:
                flush()
                progress.update(batch_size)
        if images:
            n = len(images)
            flush()
            progress.update(n)
    if tally is None:
        raise EvaluationError(f"{reader.path}: the database holds no records")
    return tally


def first_record_shape(reader: DatabaseReader, color: bool | None = None) -> tuple[int, int, int]:
    """C, H, W of the database's first record (decoded as the transform asks)."""
    if len(reader) == 0:
        raise EvaluationError(f"{reader.path}: the database holds no records")
    key, value = next(iter(reader))
    where = f"{reader.path} key {key.decode(errors='replace')}"
    return tuple(datum_to_array(parse_datum(value, where), color=color, where=where).shape)


# -- the TEST net ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoringSetup:
    """A TEST net's data layer and the blobs evaluation reads."""

    net: caffe_pb2.NetParameter  # the net filtered for TEST, data layer still in place
    data_layer: caffe_pb2.LayerParameter
    scores_blob: str

    @property
    def family(self) -> type[DataLayer]:
        """The data layer's class, which reads its parameters."""
        return data_layer_class(self.data_layer.type)

    @property
    def source(self) -> str:
        return (self.family.sources_of(self.data_layer) or [""])[0]

    @property
    def batch_size(self) -> int:
        return self.family.batch_size_of(self.data_layer)

    @property
    def transform(self) -> caffe_pb2.TransformationParameter:
        """transform_param, with deprecated data_param fields (scale, ...) folded in as the
        Data layer folds them."""
        try:
            return self.family.transform_param_of(self.data_layer)
        except ValueError as exc:
            raise EvaluationError(f"Data layer {self.data_layer.name!r}: {exc}") from None

    @property
    def data_top(self) -> str:
        return self.data_layer.top[0]

    @property
    def label_top(self) -> str:
        return self.data_layer.top[1]

    def with_input(self, data_shape: Sequence[int]) -> caffe_pb2.NetParameter:
        """The net with an Input layer (data N x C x H x W, label N) for the data layer."""
        out = caffe_pb2.NetParameter()
        out.CopyFrom(self.net)
        out.ClearField("state")
        for layer in out.layer:
            del layer.include[:], layer.exclude[:]  # already filtered for TEST and its stages
            if layer.name == self.data_layer.name:
                tops = list(layer.top)
                layer.Clear()
                layer.name, layer.type = self.data_layer.name, "Input"
                layer.top.extend(tops)
                layer.input_param.shape.add().dim.extend(int(d) for d in data_shape)
                layer.input_param.shape.add().dim.append(int(data_shape[0]))
        return out


def scoring_setup(param: caffe_pb2.NetParameter, *, stages: Sequence[str] = (), level: int = 0,
                  scores_blob: str | None = None) -> ScoringSetup:
    """Find the TEST phase's Data layer and the blob holding the class scores."""
    from pipeline_lib.engine.net import filter_net

    state = caffe_pb2.NetState(phase=caffe_pb2.TEST, level=level, stage=list(stages))
    net = filter_net(param, state)
    # evaluation streams a database of Datum records, which is what the Data layer reads
    data = [layer for layer in net.layer if layer.type == "Data"]
    if len(data) != 1:
        raise EvaluationError(f"net {param.name!r}: evaluation needs exactly one Data layer in "
                              f"the TEST phase, found {len(data)}")
    layer = data[0]
    if len(layer.top) != 2:
        raise EvaluationError(f"net {param.name!r}: Data layer {layer.name!r} has no label top")
    if not data_layer_class(layer.type).sources_of(layer):
        raise EvaluationError(f"net {param.name!r}: Data layer {layer.name!r} names no source")
    label = layer.top[1]
    if scores_blob is None:
        readers = [lp for lp in net.layer if len(lp.bottom) >= 2 and lp.bottom[1] == label]
        ranked = ([lp for lp in readers if lp.type == "Accuracy"]
                  + [lp for lp in readers if "Loss" in lp.type])
        if not ranked:
            raise EvaluationError(f"net {param.name!r}: no Accuracy or loss layer reads the "
                                  f"labels {label!r}, so the class scores are unknown; name the "
                                  "scores blob")
        scores_blob = ranked[0].bottom[0]
    return ScoringSetup(net, layer, scores_blob)


def evaluate_net(param: caffe_pb2.NetParameter | str | os.PathLike,
                 weights: str | os.PathLike | Sequence[str | os.PathLike], *,
                 source: str | os.PathLike | None = None, batch_size: int | None = None,
                 top_k: Sequence[int] = (1, 5), device: Device = Device.CPU,
                 scores_blob: str | None = None, stages: Sequence[str] = (), level: int = 0,
                 class_names: Sequence[str] | None = None, limit: int | None = None
                 ) -> tuple[Evaluation, dict]:
    """Score the TEST net's database (or `source`) once through; returns the evaluation and
    a description (net, source, blobs, batch size, transform) for reports."""
    from pipeline_lib.api import Net
    from pipeline_lib.core.backend import to_host
    from pipeline_lib.proto.prototxt import read_net

    net_files = [] if isinstance(param, caffe_pb2.NetParameter) else [param]
    if net_files:
        param = read_net(param)
    setup = scoring_setup(param, stages=stages, level=level, scores_blob=scores_blob)
    tp = setup.transform
    batch = int(batch_size or setup.batch_size or 1)
    color = True if tp.force_color else False if tp.force_gray else None
    db = Path(source if source is not None else setup.source)
    with open_db(db, "r") as reader:
        c, h, w = first_record_shape(reader, color)
        crop = int(tp.crop_size)
        pp = Preprocessor.from_transform_param(tp, (c, crop or h, crop or w), image_size=(h, w))
        with modules_beside(*net_files), \
                Net(setup.with_input((batch, *pp.input_shape)), weights, "TEST",
                    device=device) as net:
            if setup.scores_blob not in net.blobs:
                raise EvaluationError(f"net {param.name!r} has no blob {setup.scores_blob!r}")
            has_loss = any(net.core.loss_weights.values())

            def forward(images: np.ndarray, labels: np.ndarray):
                net.forward(**{setup.data_top: images, setup.label_top: labels})
                scores = to_host(net.blobs[setup.scores_blob].data).reshape(len(labels), -1)
                return scores, net.core.loss() * len(labels) if has_loss else None

            tally = score_records(reader, pp, forward, lambda k: Tally(k, top_k),
                                  batch_size=batch, color=color, limit=limit)
    info = {"net": param.name, "source": str(db), "scores_blob": setup.scores_blob,
            "batch_size": batch, "transform": pp.describe()}
    return tally.result(class_names), info


def evaluate_deploy(deploy: caffe_pb2.NetParameter | str | os.PathLike,
                    weights: str | os.PathLike | Sequence[str | os.PathLike],
                    source: str | os.PathLike, preprocessor: Preprocessor | None = None, *,
                    batch_size: int | None = None, top_k: Sequence[int] = (1, 5),
                    device: Device = Device.CPU, input_blob: str | None = None,
                    scores_blob: str | None = None,
                    class_names: Sequence[str] | None = None, limit: int | None = None
                    ) -> Evaluation:
    """Score a deploy net on a database; the transform defaults to the one in the weights."""
    from pipeline_lib.api import Net
    from pipeline_lib.proto.prototxt import read_net, read_net_binary

    net_files = [] if isinstance(deploy, caffe_pb2.NetParameter) else [deploy]
    if net_files:
        deploy = read_net(deploy)
    paths = [weights] if isinstance(weights, str | os.PathLike) else list(weights)
    trained = read_net_binary(paths[0])
    if preprocessor is None:
        preprocessor = Preprocessor.for_net(deploy, input_blob=input_blob,
                                            transform_from=trained)
    tp = find_transform_param(trained) or caffe_pb2.TransformationParameter()
    color = True if tp.force_color else False if tp.force_gray else None
    with modules_beside(*net_files), Net(deploy, paths, "TEST", device=device) as net, \
            open_db(source, "r") as reader:
        input_blob = input_blob or net.inputs[0]
        scores_blob = scores_blob or net.last_output
        batch = int(batch_size or net.blobs[input_blob].shape[0] or 1)

        def forward(images: np.ndarray, labels: np.ndarray):
            out = net.forward(blobs=[scores_blob], **{input_blob: images})
            return out[scores_blob].reshape(len(labels), -1), None

        tally = score_records(reader, preprocessor, forward, lambda k: Tally(k, top_k),
                              batch_size=batch, color=color, limit=limit)
    return tally.result(class_names)


# -- solvers and reports ------------------------------------------------------------------------
def solver_test_net(solver_path: str | os.PathLike, workflow_dir: str | os.PathLike | None = None
                    ) -> tuple[caffe_pb2.NetParameter, str, tuple[str, ...], int]:
    """The net a solver tests with: (param, where it came from, test stages, test level).
    Files are found as for training (engine.model_files.locate)."""
    from pipeline_lib.engine.model_files import SolverFiles

    files = SolverFiles.read(solver_path, workflow_dir=workflow_dir)
    solver, solver_path = files.param, files.path
    stages, level = (), 0
    if len(solver.test_state):
        stages, level = tuple(solver.test_state[0].stage), solver.test_state[0].level
    if len(solver.test_net_param):
        return solver.test_net_param[0], f"{solver_path} (test_net_param)", stages, level
    if len(solver.test_net):
        name = solver.test_net[0]
        return files.nets[name], files.locations[name], stages, level
    if solver.HasField("net_param"):
        return solver.net_param, f"{solver_path} (net_param)", stages, level
    if solver.net:
        return files.nets[solver.net], files.locations[solver.net], stages, level
    raise EvaluationError(f"{solver_path}: the solver names no net to test with")


def evaluation_inputs(solver_path: str | os.PathLike,
                      workflow_dir: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Files evaluating a solver's model reads: its test net, database and mean file."""
    from pipeline_lib.engine.model_files import locate

    param, where, stages, level = solver_test_net(solver_path, workflow_dir)
    setup = scoring_setup(param, stages=stages, level=level)
    nets = [where] if os.path.exists(where) else []
    tp = setup.transform
    return {"solver": [locate(solver_path, workflow_dir)], "nets": nets, "data": [setup.source],
            "means": [tp.mean_file] if tp.mean_file else []}


def evaluate_solver(solver_path: str | os.PathLike, weights: str | os.PathLike, *,
                    workflow_dir: str | os.PathLike | None = None, **kwargs
                    ) -> tuple[Evaluation, dict]:
    """Evaluate trained weights with the solver's TEST net on its test database."""
    from pipeline_lib.engine.model_files import locate

    param, where, stages, level = solver_test_net(solver_path, workflow_dir)
    # a net inline in the solver was read from the solver's file
    net_file = where if os.path.exists(where) else locate(solver_path, workflow_dir)
    with modules_beside(net_file):
        evaluation, info = evaluate_net(param, weights, stages=stages, level=level, **kwargs)
    return evaluation, {"solver": str(solver_path), "net_file": where, **info}


def confusion_figure(confusion: pd.DataFrame, title: str = ""):
    """The confusion matrix with its mistakes visible, and the per-class accuracy beside it.

    Left: each off-diagonal cell coloured by the fraction of its true class on a log scale
    (so one mistake in a thousand still shows; cells without mistakes stay white), the
    diagonal masked in grey, counts written in the cells (up to 30 classes). Right: each true
    class's accuracy, one dot per row, its value written beside it. The caller closes it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    counts = confusion.to_numpy()
    k = counts.shape[0]
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = counts / totals
    off = np.where(~np.eye(k, dtype=bool) & (counts > 0), rows, np.nan)
    size = min(5 + 0.55 * k, 18)
    fig, (ax, ax_acc) = plt.subplots(1, 2, figsize=(size * 1.3, size * 0.85),
                                     gridspec_kw={"width_ratios": (4, 1.3)},
                                     constrained_layout=True)
    ax.imshow(np.where(np.eye(k, dtype=bool), 1.0, np.nan), cmap="Greys", vmin=0, vmax=4)
    positive = off[np.isfinite(off)]
    if positive.size:
        lo, hi = float(positive.min()), float(positive.max())
        # the scale starts below the smallest mistake, so that one is tinted, not white
        image = ax.imshow(off, cmap="Reds", norm=LogNorm(vmin=lo / 4, vmax=max(hi, lo * 1.01)))
        fig.colorbar(image, ax=ax, shrink=0.8,
                     label="mistakes: fraction of the true class (log scale)")
    ticks = np.arange(k)
    if k <= 30:
        ax.set_xticks(ticks, labels=list(confusion.columns), rotation=90 if k > 10 else 0)
        ax.set_yticks(ticks, labels=list(confusion.index))
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    dark = i != j and np.isfinite(off[i, j]) and off[i, j] > np.sqrt(lo * hi)
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                            fontweight="bold" if i == j else "normal",
                            color="white" if dark else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "Confusion matrix", fontsize="medium")

    accuracy = np.diag(rows)
    present = np.isfinite(accuracy)
    ax_acc.plot(accuracy[present], ticks[present], "o", color="tab:blue")
    ax_acc.set_ylim(k - 0.5, -0.5)  # the same rows as the matrix
    ax_acc.set_yticks(ticks, labels=[] if k > 30 else list(confusion.index))
    if present.any():
        worst = float(accuracy[present].min())
        ax_acc.set_xlim(max(worst - max((1 - worst) * 0.6, 0.005), 0.0), 1.0)
        if k <= 30:
            for i in np.flatnonzero(present):
                ax_acc.annotate(f"{accuracy[i]:.3f}", (accuracy[i], i), xytext=(-6, 0),
                                textcoords="offset points", ha="right", va="center",
                                fontsize=8)
    ax_acc.set_xlabel("accuracy")
    ax_acc.set_title("per-class accuracy", fontsize="medium")
    ax_acc.grid(True, axis="x", alpha=0.3)
    return fig


def confusion_png(confusion: pd.DataFrame, title: str = "") -> bytes:
    """`confusion_figure` as PNG bytes (no date or version in them)."""
    import matplotlib.pyplot as plt

    fig = confusion_figure(confusion, title)
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def write_reports(evaluation: Evaluation, json_path: str | os.PathLike,
                  csv_path: str | os.PathLike | None = None,
                  png_path: str | os.PathLike | None = None, *, title: str = "", **info) -> dict:
    """Write the JSON summary (info + numbers), the confusion CSV and its heatmap, atomically."""
    doc = {**info, **evaluation.to_dict()}
    if csv_path is not None:
        doc["confusion_csv"] = str(csv_path)
        atomic_write_bytes(csv_path, evaluation.confusion.to_csv(
            index_label="true\\predicted").encode("utf-8"))
    if png_path is not None:
        doc["confusion_png"] = str(png_path)
        atomic_write_bytes(png_path, confusion_png(evaluation.confusion, title))
    atomic_write_bytes(json_path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    return doc


def read_confusion_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A confusion matrix written by `write_reports`."""
    frame = pd.read_csv(path, index_col=0, dtype={0: str})
    frame.index.name, frame.columns.name = "true", "predicted"
    return frame
