# MNIST: fetch the four IDX files (verified by sha256), then one database per split.


localrules:
    download_mnist,


rule download_mnist:
    output:
        mnist_idx_files(),
    log:
        "logs/mnist/download_mnist.log",
    conda:
        "../envs/pipeline.yaml"
    params:
        # What the files are (their identity). Where they come from (config
        # mnist.sources, download timeouts) is read by the script from the config,
        # so editing the mirror list does not invalidate verified files.
        files=config["mnist"]["files"],
    script:
        "../scripts/download_mnist.py"


rule convert_mnist:
    input:
        unpack(mnist_split_inputs),
    output:
        directory(f"{MNIST_DIR}/mnist_{{split}}_{{backend}}"),
    log:
        "logs/mnist/convert_mnist_{split}_{backend}.log",
    wildcard_constraints:
        split="train|test",
        backend="lmdb|leveldb",
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/convert_mnist.py"
