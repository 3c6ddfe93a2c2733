"""Config validation and helpers shared by the rule files."""

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


# -- training -------------------------------------------------------------------------

MODELS = config.get("models", {})


def model_constraint():
    """Regex matching exactly the configured model names (some contain underscores)."""
    import re

    return "|".join(re.escape(name) for name in sorted(MODELS, key=len, reverse=True))


def train_inputs(wildcards):
    """The solver, its nets and the databases / mean files those nets read."""
    from pipeline_lib.engine.model_files import SolverFiles

    files = SolverFiles.read(MODELS[wildcards.model]["solver"]).files
    return {
        "solver": files.solver,
        "nets": list(files.nets),
        "data": list(files.data_sources),
        "means": list(files.mean_files),
    }


def train_output_stem(wildcards, output):
    """results/<model>_iter_<N>: the final snapshot's path without its extension."""
    return output.model[: -len(".caffemodel")]
