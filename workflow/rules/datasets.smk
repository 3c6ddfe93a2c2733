# Datasets (config `datasets:`), each under data/<name>/ by its format:
#   idx:    fetch the four IDX files (verified by sha256) -> one database per split
#   images: listings -> resized images in shards (scatter/gather) -> one database per
#           split (convert_imageset) -> the train mean (compute_image_mean)
#   cifar:  CIFAR-10's binary batches -> one database per split (convert_cifar_data)
#   hdf5:   the list file of .h5 files that HDF5Data reads, per split
# `snakemake <name>` builds one dataset.

IDX = names_constraint(datasets_of("idx"))
IMAGES = names_constraint(datasets_of("images"))
FOLDER_LISTED = names_constraint(datasets_of("images", listings="folders"))
FOLDER_SYNSETS = names_constraint(
    datasets_of("images", listings="folders", synset_words="")
)
CIFAR = names_constraint(datasets_of("cifar"))
HDF5 = names_constraint(datasets_of("hdf5"))


for _name in DATASETS:

    rule:
        name:
            _name
        input:
            dataset_targets(_name),
        localrule: True


# -- IDX --


rule fetch_idx:
    input:
        idx_local_inputs,
    output:
        [
            f"data/{{dataset}}/{name}"
            for pair in IDX_SPLIT_FILES.values()
            for name in pair
        ],
    log:
        "logs/{dataset}/fetch.log",
    wildcard_constraints:
        dataset=IDX,
    localrule: True
    conda:
        "../envs/pipeline.yaml"
    params:
        # What the files are (their identity). Where they come from (sources, download
        # timeouts) is read by the script from the config, so editing the mirror list
        # does not invalidate verified files.
        files=dataset_setting("files"),
        lock=lock_file(),
    script:
        "../scripts/fetch_idx.py"


rule convert_idx:
    input:
        unpack(idx_split_inputs),
    output:
        directory("data/{dataset}/{dataset}_{split}_{backend}"),
    log:
        "logs/{dataset}/convert_{split}_{backend}.log",
    wildcard_constraints:
        dataset=IDX,
        split="train|test",
        backend="lmdb|leveldb",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/convert_idx.py"


# -- CIFAR-10 and HDF5 --


rule convert_cifar:
    input:
        cifar_split_inputs,
    output:
        directory("data/{dataset}/{dataset}_{split}_{backend}"),
    log:
        "logs/{dataset}/convert_{split}_{backend}.log",
    wildcard_constraints:
        dataset=CIFAR,
        split="train|test",
        backend="lmdb|leveldb",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/convert_cifar.py"


rule hdf5_list:
    input:
        hdf5_split_files,
    output:
        "data/{dataset}/{dataset}_{split}.txt",
    log:
        "logs/{dataset}/list_{split}.log",
    wildcard_constraints:
        dataset=HDF5,
    localrule: True
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/hdf5_list.py"


# -- image folders --


rule images_synsets:
    input:
        root=lambda w: DATASETS[w.dataset]["train_root"],
    output:
        "data/{dataset}/{dataset}_synset_words.txt",
    log:
        "logs/{dataset}/synsets.log",
    wildcard_constraints:
        dataset=FOLDER_SYNSETS,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/make_synsets.py"


rule images_listing:
    input:
        unpack(images_listing_inputs),
    output:
        "data/{dataset}/{dataset}_{split}.txt",
    log:
        "logs/{dataset}/listing_{split}.log",
    wildcard_constraints:
        dataset=FOLDER_LISTED,
        split="train|val",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/make_listing.py"


rule images_resize_shard:
    input:
        unpack(images_shard_inputs),
    output:
        images=temp(directory("data/{dataset}/resized/shards/{split}/{scatteritem}")),
        listing=temp("data/{dataset}/resized/shards/{split}/{scatteritem}.txt"),
        skipped=temp("data/{dataset}/resized/shards/{split}/{scatteritem}_skipped.tsv"),
    log:
        "logs/{dataset}/resize_{split}_{scatteritem}.log",
    wildcard_constraints:
        dataset=IMAGES,
        split="train|val",
    conda:
        "../envs/pipeline.yaml"
    params:
        resize=dataset_setting("resize"),
        gray=lambda w: DATASETS[w.dataset]["convert"]["gray"],
        on_error=dataset_setting("on_error"),
    script:
        "../scripts/resize_shard.py"


rule images_gather_resized:
    input:
        unpack(images_gathered_shards),
    output:
        images=directory("data/{dataset}/resized/{split}"),
        listing="data/{dataset}/resized/{split}.txt",
        skipped="data/{dataset}/resized/{split}_skipped.tsv",
    log:
        "logs/{dataset}/gather_resized_{split}.log",
    wildcard_constraints:
        dataset=IMAGES,
        split="train|val",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/gather_resized.py"


rule images_convert:
    input:
        unpack(images_convert_inputs),
    output:
        db=directory("data/{dataset}/{dataset}_{split}_{backend}"),
        skipped="data/{dataset}/{dataset}_{split}_{backend}_skipped.tsv",
    log:
        "logs/{dataset}/convert_{split}_{backend}.log",
    wildcard_constraints:
        dataset=IMAGES,
        split="train|val",
        backend="lmdb|leveldb",
    conda:
        "../envs/pipeline.yaml"
    threads: 2
    params:
        convert=dataset_setting("convert"),
        on_error=dataset_setting("on_error"),
    script:
        "../scripts/convert_imageset.py"


rule images_mean:
    input:
        "data/{dataset}/{dataset}_{split}_{backend}",
    output:
        "data/{dataset}/{dataset}_{split}_{backend}_mean.binaryproto",
    log:
        "logs/{dataset}/mean_{split}_{backend}.log",
    wildcard_constraints:
        dataset=IMAGES,
        split="train|val",
        backend="lmdb|leveldb",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/compute_image_mean.py"
