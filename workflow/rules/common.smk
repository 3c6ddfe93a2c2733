"""Config validation and the helpers that the rules use (paths, inputs, targets)."""

import functools

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
