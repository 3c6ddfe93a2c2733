"""Config validation and the helpers that the rules use (paths, inputs, targets)."""

import functools
import itertools

import yaml
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

MNIST_DIR = config["mnist"]["dir"]
# Dataset split (Caffe's mnist_train_lmdb / mnist_test_lmdb) -> (images, labels) IDX files.
MNIST_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def mnist_idx_files():
    """The four decompressed IDX files the download rule writes."""
    return [
        f"{MNIST_DIR}/{name}" for pair in MNIST_SPLIT_FILES.values() for name in pair
    ]


def mnist_split_inputs(wildcards):
    """Named inputs (images, labels) of one split's conversion."""
    images, labels = MNIST_SPLIT_FILES[wildcards.split]
    return {"images": f"{MNIST_DIR}/{images}", "labels": f"{MNIST_DIR}/{labels}"}


def mnist_databases(backend=None):
    """The train and test databases of Datum records, in the configured backend."""
    return expand(
        "{dir}/mnist_{split}_{backend}",
        dir=MNIST_DIR,
        split=list(MNIST_SPLIT_FILES),
        backend=backend or config["backend"],
    )


# -- ImageNet --------------------------------------------------------------------------

IMAGENET = config["imagenet"]
IMAGENET_DIR = IMAGENET["dir"]
IMAGENET_SPLITS = ("train", "val")


scattergather:
    imagenet_resize=IMAGENET["resize"]["shards"],


def imagenet_synsets():
    """The synset file: the configured one, or the one written from the train folders."""
    if IMAGENET["listings"] == "folders" and not IMAGENET["synset_words"]:
        return f"{IMAGENET_DIR}/synset_words.txt"
    return IMAGENET["synset_words"]


def imagenet_listing(split):
    """A split's listing: the configured file, or the one written from its folders."""
    if IMAGENET["listings"] == "folders":
        return f"{IMAGENET_DIR}/{split}.txt"
    return IMAGENET[f"{split}_listing"]


def imagenet_root(wildcards):
    return IMAGENET[f"{wildcards.split}_root"]


def imagenet_listing_inputs(wildcards):
    """Named inputs of a split's listing (folders mode)."""
    return {"root": imagenet_root(wildcards), "synsets": imagenet_synsets()}


def imagenet_shard_inputs(wildcards):
    """Named inputs of one resize shard: the split's listing, synsets and image root."""
    return {
        "listing": imagenet_listing(wildcards.split),
        "synsets": imagenet_synsets(),
        "root": imagenet_root(wildcards),
    }


def imagenet_gathered_shards(wildcards):
    """Named inputs of a split's gather: every shard's image folder, listing and report."""
    shard = f"{IMAGENET_DIR}/resized/shards/{wildcards.split}/{{scatteritem}}"
    return {
        "images": gather.imagenet_resize(shard),
        "listings": gather.imagenet_resize(f"{shard}.txt"),
        "skipped": gather.imagenet_resize(f"{shard}_skipped.tsv"),
    }


def imagenet_convert_inputs(wildcards):
    """Named inputs of a split's conversion: resized images when resizing, else the originals."""
    if IMAGENET["resize"]["enabled"]:
        base = f"{IMAGENET_DIR}/resized/{wildcards.split}"
        return {"listing": f"{base}.txt", "root": base, "synsets": imagenet_synsets()}
    return {
        "listing": imagenet_listing(wildcards.split),
        "root": imagenet_root(wildcards),
        "synsets": imagenet_synsets(),
    }


def imagenet_targets(backend=None):
    """Both databases and the training mean, in the configured backend."""
    backend = backend or config["backend"]
    return [
        *expand(
            "{dir}/ilsvrc12_{split}_{backend}",
            dir=IMAGENET_DIR,
            split=IMAGENET_SPLITS,
            backend=backend,
        ),
        f"{IMAGENET_DIR}/ilsvrc12_train_{backend}_mean.binaryproto",
    ]


# -- counts in target names ------------------------------------------------------------

# `_iter_<N>` and `_batch<B>` in a target's name match anything up to the next `/` or `_`,
# so that a malformed count gets check_count's message, not "No rule to produce" (or
# Snakemake's periodic-wildcard error for 99999999999999999999).
COUNT_WILDCARD = r"[^/_]+"


def check_count(wildcards, name, what):
    """Wildcard `name` must be a whole number from 1 to 2147483647 (Caffe's counts are
    int32); called from the rule's input function, which Snakemake asks first."""
    text = wildcards[name]
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 2**31 - 1):
        raise ValueError(
            f"{what} {text!r} in the target's name must be a whole number "
            "from 1 to 2147483647"
        )


# -- training --------------------------------------------------------------------------

MODELS = config.get("models", {})


def model_constraint():
    """Regex matching exactly the configured model names (some contain underscores)."""
    import re

    return "|".join(re.escape(name) for name in sorted(MODELS, key=len, reverse=True))


def workflow_file(path):
    """A file named by the config or by a rule, found in the working directory, else in
    the workflow's folder (pipeline_lib.engine.model_files.locate decides)."""
    from pipeline_lib.engine.model_files import locate

    return locate(path, WORKFLOW_DIR)


def run_settings(wildcards):
    """What one training run uses: the model's config entry, with a sweep point's
    parameters added to its overrides (rule sweep_train)."""
    settings = dict(MODELS[wildcards.model])
    overrides = dict(settings.get("overrides") or {})
    if "sweep" in wildcards.keys():
        overrides.update(SWEEPS[wildcards.sweep].get("overrides") or {})
        overrides.update(sweep_point(wildcards))
    if overrides:
        settings["overrides"] = overrides
    return settings


def overrides_origin(wildcards):
    """Where a run's overrides come from, for messages."""
    if "sweep" in wildcards.keys():
        return (
            f"config models.{wildcards.model}.overrides + sweeps.{wildcards.sweep}"
            ".overrides + .grid"
        )
    return f"config models.{wildcards.model}.overrides"


@functools.cache
def read_solver_files(solver, overrides_yaml, where):
    from pipeline_lib.engine.model_files import SolverFiles

    overrides = yaml.safe_load(overrides_yaml)
    return SolverFiles.read(
        solver, workflow_dir=WORKFLOW_DIR, overrides=overrides, where=where
    )


def solver_files(wildcards):
    """The run's solver (overrides applied) and nets, read once per run while Snakemake
    builds its graph."""
    settings = run_settings(wildcards)
    overrides = yaml.safe_dump(settings.get("overrides") or {}, sort_keys=True)
    return read_solver_files(settings["solver"], overrides, overrides_origin(wildcards))


def train_inputs(wildcards):
    """The solver, its nets, the databases / mean files those nets read, and the weights
    a fine-tuning run starts from (another model's target is built by its rule)."""
    check_count(wildcards, "iter", "the iteration count")
    files = solver_files(wildcards).files
    weights = run_settings(wildcards).get("weights")
    return {
        "solver": files.solver,
        "nets": list(files.nets),
        "data": list(files.data_sources),
        "means": list(files.mean_files),
        "weights": [weights] if weights else [],
    }


def train_output_stem(wildcards, output):
    """results/<model>_iter_<N>: the final snapshot's path without its extension."""
    return output.model[: -len(".caffemodel")]


def train_config_section(wildcards):
    """The config this run uses (kept in its provenance record; a change, e.g. of its
    overrides or weights, reruns this training and no other)."""
    section = {
        "model": wildcards.model,
        "models": {wildcards.model: run_settings(wildcards)},
        "train": config["train"],
    }
    if "sweep" in wildcards.keys():
        section["sweep"] = {"name": wildcards.sweep, "point": sweep_point(wildcards)}
    return section


def train_gpus(wildcards):
    """1 when the run trains on a GPU (config override, else the solver's solver_mode)."""
    from pipeline_lib.core.backend import Device
    from pipeline_lib.engine.training.device import run_device

    solver = solver_files(wildcards).param
    return int(run_device(config["train"]["solver_mode"], solver) is Device.GPU)


# Overrides are checked when the workflow is read: a bad one is one message, before any job.
from pipeline_lib.engine.overrides import check_overrides

for _name, _model in MODELS.items():
    check_overrides(_model.get("overrides"), f"config models.{_name}.overrides")


# -- sweeps ----------------------------------------------------------------------------

SWEEPS = config.get("sweeps", {})


def sweep_constraint():
    """Regex matching exactly the configured sweep names (none: matching nothing)."""
    import re

    return "|".join(re.escape(name) for name in SWEEPS) or "^$"


# A point's folder: Paramspace's pattern, e.g. base_lr~0.01/momentum~0.9.
POINT_WILDCARD = r"[^/]+~[^/]+(?:/[^/]+~[^/]+)*"


@functools.cache
def sweep_space(sweep):
    """The sweep's grid (every combination of its values) as a Paramspace whose single
    wildcard `point` names one combination."""
    import pandas as pd
    from snakemake.utils import Paramspace

    grid = SWEEPS[sweep]["grid"]
    frame = pd.DataFrame(list(itertools.product(*grid.values())), columns=list(grid))
    return Paramspace(frame, single_wildcard="point")


def sweep_point(wildcards):
    """The point's parameters as plain Python values, e.g. {"base_lr": 0.01}."""
    values = sweep_space(wildcards.sweep).instance(wildcards)
    return {k: v.item() if hasattr(v, "item") else v for k, v in values.items()}


def sweep_runs(wildcards, suffix):
    """One file per point of the sweep: results/sweeps/<sweep>/<point>/<model>_iter_<N><suffix>."""
    sweep = SWEEPS[wildcards.sweep]
    stem = f"{sweep['model']}_iter_{sweep['iterations']}"
    return [
        f"results/sweeps/{wildcards.sweep}/{point}/{stem}{suffix}"
        for point in sweep_space(wildcards.sweep).instance_patterns
    ]


def sweep_points(wildcards):
    """The points' parameters, in the order of sweep_runs."""
    return sweep_space(wildcards.sweep).dataframe.to_dict("records")


for _name, _sweep in SWEEPS.items():
    if _sweep["model"] not in MODELS:
        raise ValueError(
            f"config sweeps.{_name}.model: {_sweep['model']!r} is not a model in "
            f"`models:` ({', '.join(MODELS) or 'none'})"
        )
    check_overrides(_sweep.get("overrides"), f"config sweeps.{_name}.overrides")
    for _values in itertools.product(*_sweep["grid"].values()):
        check_overrides(
            dict(zip(_sweep["grid"], _values)), f"config sweeps.{_name}.grid"
        )


# -- evaluation ------------------------------------------------------------------------


def evaluate_inputs(wildcards):
    """The solver, its TEST net and the database and mean file that net reads."""
    from pipeline_lib.evaluate import evaluation_inputs

    files = evaluation_inputs(MODELS[wildcards.model]["solver"], WORKFLOW_DIR)
    return {**files, "solver": files["solver"][0]}


# -- timing ----------------------------------------------------------------------------


def caffenet_time_inputs(wildcards):
    """The net to time (its batch size from the target's name, checked)."""
    check_count(wildcards, "batch", "the batch size")
    return workflow_file(f"models/caffenet/{wildcards.net}.prototxt")
