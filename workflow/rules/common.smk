"""Config validation and the helpers that the rules use (paths, inputs, targets)."""

import functools

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


@functools.cache
def solver_files(model):
    """The model's solver and nets, read once while Snakemake builds its graph."""
    from pipeline_lib.engine.model_files import SolverFiles

    return SolverFiles.read(MODELS[model]["solver"])


def train_inputs(wildcards):
    """The solver, its nets and the databases / mean files those nets read."""
    check_count(wildcards, "iter", "the iteration count")
    files = solver_files(wildcards.model).files
    return {
        "solver": files.solver,
        "nets": list(files.nets),
        "data": list(files.data_sources),
        "means": list(files.mean_files),
    }


def train_output_stem(wildcards, output):
    """results/<model>_iter_<N>: the final snapshot's path without its extension."""
    return output.model[: -len(".caffemodel")]


def train_config_section(wildcards):
    """The config this run uses (kept in its provenance record; a change reruns it)."""
    return {
        "model": wildcards.model,
        "models": {wildcards.model: MODELS[wildcards.model]},
        "train": config["train"],
    }


def train_gpus(wildcards):
    """1 when the run trains on a GPU (config override, else the solver's solver_mode)."""
    from pipeline_lib.core.backend import Device
    from pipeline_lib.engine.training.device import run_device

    solver = solver_files(wildcards.model).param
    return int(run_device(config["train"]["solver_mode"], solver) is Device.GPU)


# -- evaluation ------------------------------------------------------------------------


def evaluate_inputs(wildcards):
    """The solver, its TEST net and the database and mean file that net reads."""
    from pipeline_lib.evaluate import evaluation_inputs

    files = evaluation_inputs(MODELS[wildcards.model]["solver"])
    return {**files, "solver": files["solver"][0]}


# -- timing ----------------------------------------------------------------------------


def caffenet_time_inputs(wildcards):
    """The net to time (its batch size from the target's name, checked)."""
    check_count(wildcards, "batch", "the batch size")
    return f"models/caffenet/{wildcards.net}.prototxt"
