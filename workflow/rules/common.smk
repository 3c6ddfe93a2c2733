"""Config validation and the helpers that the rules use (paths, inputs, targets)."""

import functools
import itertools

import yaml
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# -- datasets --------------------------------------------------------------------------

DATASETS = config["datasets"]
# The splits each format's databases (or lists) are named by.
FORMAT_SPLITS = {
    "idx": ("train", "test"),
    "images": ("train", "val"),
    "cifar": ("train", "test"),
}
# IDX split -> (images, labels) files (Caffe's <name>_train_lmdb / <name>_test_lmdb).
IDX_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def datasets_of(fmt, **settings):
    """Names of the datasets of format `fmt` whose settings equal `settings`."""
    return [
        name
        for name, entry in DATASETS.items()
        if entry["format"] == fmt
        and all(entry.get(k) == v for k, v in settings.items())
    ]


def names_constraint(names):
    """A wildcard regex matching exactly `names` (and nothing when there are none)."""
    import re

    if not names:
        return "(?!)"
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def dataset_targets(name, backend=None):
    """Everything dataset `name` yields: its databases (and mean) or its HDF5 lists."""
    entry, backend = DATASETS[name], backend or config["backend"]
    base = f"data/{name}/{name}"
    if entry["format"] == "hdf5":
        return [f"{base}_{split}.txt" for split in entry["splits"]]
    targets = [f"{base}_{split}_{backend}" for split in FORMAT_SPLITS[entry["format"]]]
    if entry["format"] == "images":
        targets.append(f"{base}_train_{backend}_mean.binaryproto")
    return targets


def mnist_databases(backend=None):
    """The MNIST train and test databases (the tutorial's), in the configured backend."""
    return dataset_targets("mnist", backend) if "mnist" in DATASETS else []


def lock_file():
    """datasets.lock.yaml beside the config file (the last one given, else config.yaml)."""
    import os

    files = list(workflow.overwrite_configfiles) or list(workflow.configfiles)
    folder = os.path.dirname(os.path.abspath(files[-1])) if files else os.getcwd()
    return os.path.join(folder, "datasets.lock.yaml")


# -- IDX --


def idx_files(wildcards):
    """The four decompressed IDX files the fetch rule writes."""
    return [
        f"data/{wildcards.dataset}/{name}"
        for pair in IDX_SPLIT_FILES.values()
        for name in pair
    ]


def idx_local_inputs(wildcards):
    """The files found now in the dataset's local sources: a changed one refetches
    (and, for files pinned by the lock file only, is checked against it)."""
    import os
    import urllib.parse
    import urllib.request

    found = []
    for source in DATASETS[wildcards.dataset]["sources"]:
        if source["type"] != "local":
            continue
        folder = source["path"]
        if folder.startswith("file:"):
            folder = urllib.request.url2pathname(urllib.parse.urlsplit(folder).path)
        for pair in IDX_SPLIT_FILES.values():
            for name in pair:
                for candidate in (name, f"{name}.gz"):
                    path = os.path.join(folder, candidate)
                    if os.path.isfile(path):
                        found.append(path)
    return found


def idx_split_inputs(wildcards):
    """Named inputs (images, labels) of one split's conversion."""
    images, labels = IDX_SPLIT_FILES[wildcards.split]
    base = f"data/{wildcards.dataset}"
    return {"images": f"{base}/{images}", "labels": f"{base}/{labels}"}


# -- CIFAR-10, HDF5 --


def cifar_split_inputs(wildcards):
    """The batch files of one split, in record order."""
    from pipeline_lib.data.cifar import SPLIT_BATCHES

    root = DATASETS[wildcards.dataset]["root"]
    return [f"{root}/{name}" for name in SPLIT_BATCHES[wildcards.split]]


def hdf5_split_files(wildcards):
    """The .h5 files one split lists (checked by the rule before it writes the list)."""
    return DATASETS[wildcards.dataset]["splits"][wildcards.split]


# -- image folders --


def images_synsets(name):
    """The synset file: the configured one, or the one written from the train folders."""
    entry = DATASETS[name]
    if entry["listings"] == "folders" and not entry["synset_words"]:
        return f"data/{name}/{name}_synset_words.txt"
    return entry["synset_words"]


def images_listing(name, split):
    """A split's listing: the configured file, or the one written from its folders."""
    if DATASETS[name]["listings"] == "folders":
        return f"data/{name}/{name}_{split}.txt"
    return DATASETS[name][f"{split}_listing"]


def images_root(wildcards):
    return DATASETS[wildcards.dataset][f"{wildcards.split}_root"]


def images_listing_inputs(wildcards):
    """Named inputs of a split's listing (folders mode)."""
    return {
        "root": images_root(wildcards),
        "synsets": images_synsets(wildcards.dataset),
    }


def images_shard_inputs(wildcards):
    """Named inputs of one resize shard: the split's listing, synsets and image root."""
    return {
        "listing": images_listing(wildcards.dataset, wildcards.split),
        "synsets": images_synsets(wildcards.dataset),
        "root": images_root(wildcards),
    }


def images_gathered_shards(wildcards):
    """Named inputs of a split's gather: every shard's image folder, listing and report."""
    gather_shards = getattr(gather, f"{wildcards.dataset}_resize")
    shard = f"data/{wildcards.dataset}/resized/shards/{wildcards.split}/{{scatteritem}}"
    return {
        "images": gather_shards(shard),
        "listings": gather_shards(f"{shard}.txt"),
        "skipped": gather_shards(f"{shard}_skipped.tsv"),
    }


def images_convert_inputs(wildcards):
    """Named inputs of a split's conversion: resized images when resizing, else the originals."""
    name = wildcards.dataset
    if DATASETS[name]["resize"]["enabled"]:
        base = f"data/{name}/resized/{wildcards.split}"
        return {"listing": f"{base}.txt", "root": base, "synsets": images_synsets(name)}
    return {
        "listing": images_listing(name, wildcards.split),
        "root": images_root(wildcards),
        "synsets": images_synsets(name),
    }


def dataset_setting(key):
    """A params function: the setting `key` of the wildcard's dataset."""
    return lambda wildcards: DATASETS[wildcards.dataset][key]


scattergather:
    **{
        f"{name}_resize": DATASETS[name]["resize"]["shards"]
        for name in datasets_of("images")
    },


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
