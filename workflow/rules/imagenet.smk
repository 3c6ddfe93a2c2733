# "Brewing ImageNet": listings -> resized images in shards (scatter/gather) -> one database
# of Datums per split (convert_imageset) -> the mean image (compute_image_mean).
# `snakemake --cores N imagenet` builds all of it for the configured backend.


localrules:
    imagenet,


rule imagenet:
    input:
        imagenet_targets(),


if IMAGENET["listings"] == "folders":
    if not IMAGENET["synset_words"]:

        rule imagenet_synsets:
            input:
                root=IMAGENET["train_root"],
            output:
                f"{IMAGENET_DIR}/synset_words.txt",
            log:
                "logs/imagenet/synsets.log",
            conda:
                "../envs/pipeline.yaml"
            script:
                "../scripts/make_synsets.py"

    rule imagenet_listing:
        input:
            unpack(imagenet_listing_inputs),
        output:
            f"{IMAGENET_DIR}/{{split}}.txt",
        log:
            "logs/imagenet/listing_{split}.log",
        wildcard_constraints:
            split="train|val",
        conda:
            "../envs/pipeline.yaml"
        script:
            "../scripts/make_listing.py"


rule imagenet_resize_shard:
    input:
        unpack(imagenet_shard_inputs),
    output:
        images=temp(
            directory(f"{IMAGENET_DIR}/resized/shards/{{split}}/{{scatteritem}}")
        ),
        listing=temp(f"{IMAGENET_DIR}/resized/shards/{{split}}/{{scatteritem}}.txt"),
        skipped=temp(
            f"{IMAGENET_DIR}/resized/shards/{{split}}/{{scatteritem}}_skipped.tsv"
        ),
    log:
        "logs/imagenet/resize_{split}_{scatteritem}.log",
    wildcard_constraints:
        split="train|val",
    conda:
        "../envs/pipeline.yaml"
    params:
        resize=IMAGENET["resize"],
        gray=IMAGENET["convert"]["gray"],
        on_error=IMAGENET["on_error"],
    script:
        "../scripts/resize_shard.py"


rule imagenet_gather_resized:
    input:
        unpack(imagenet_gathered_shards),
    output:
        images=directory(f"{IMAGENET_DIR}/resized/{{split}}"),
        listing=f"{IMAGENET_DIR}/resized/{{split}}.txt",
        skipped=f"{IMAGENET_DIR}/resized/{{split}}_skipped.tsv",
    log:
        "logs/imagenet/gather_resized_{split}.log",
    wildcard_constraints:
        split="train|val",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/gather_resized.py"


rule imagenet_convert:
    input:
        unpack(imagenet_convert_inputs),
    output:
        db=directory(f"{IMAGENET_DIR}/ilsvrc12_{{split}}_{{backend}}"),
        skipped=f"{IMAGENET_DIR}/ilsvrc12_{{split}}_{{backend}}_skipped.tsv",
    log:
        "logs/imagenet/convert_{split}_{backend}.log",
    wildcard_constraints:
        split="train|val",
        backend="lmdb|leveldb",
    conda:
        "../envs/pipeline.yaml"
    threads: 2
    params:
        convert=IMAGENET["convert"],
        on_error=IMAGENET["on_error"],
    script:
        "../scripts/convert_imageset.py"


rule imagenet_mean:
    input:
        f"{IMAGENET_DIR}/ilsvrc12_{{split}}_{{backend}}",
    output:
        f"{IMAGENET_DIR}/ilsvrc12_{{split}}_{{backend}}_mean.binaryproto",
    log:
        "logs/imagenet/mean_{split}_{backend}.log",
    wildcard_constraints:
        split="train|val",
        backend="lmdb|leveldb",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/compute_image_mean.py"


# `caffe time` on CaffeNet: per-layer forward/backward milliseconds for a batch size,
# e.g. results/caffenet_deploy_time_batch10.txt. train_val's Data layers are replaced by
# gaussian dummy data of the crop size, so timing needs no database (as `--dummy-data`).
rule caffenet_time:
    input:
        caffenet_time_inputs,
    output:
        "results/caffenet_{net}_time_batch{batch}.txt",
    log:
        "logs/imagenet/time_caffenet_{net}_batch{batch}.log",
    wildcard_constraints:
        net="deploy|train_val",
        batch=COUNT_WILDCARD,
    conda:
        "../envs/pipeline.yaml"
    threads: 2
    params:
        iterations=IMAGENET["time_iterations"],
    script:
        "../scripts/time_net.py"
