"""Config and helpers of the ImageNet rules (imagenet.smk): paths, inputs, targets."""

IMAGENET = config["imagenet"]
IMAGENET_DIR = IMAGENET["dir"]
IMAGENET_SPLITS = ("train", "val")

if IMAGENET["listings"] == "given" and not IMAGENET["synset_words"]:
    raise ValueError(
        "config imagenet.synset_words is empty, but imagenet.listings is 'given': name the "
        "synset_words.txt that the listings' labels index, or set listings: folders"
    )


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
