# `caffe time` on CaffeNet: per-layer forward/backward milliseconds for a batch size,
# e.g. results/caffenet_deploy_time_batch10.txt. train_val's Data layers are replaced by
# gaussian dummy data of the crop size, so timing needs no database (as `--dummy-data`).


rule caffenet_time:
    input:
        caffenet_time_inputs,
    output:
        "results/caffenet_{net}_time_batch{batch}.txt",
    log:
        "logs/time/caffenet_{net}_batch{batch}.log",
    wildcard_constraints:
        net="deploy|train_val",
        batch=COUNT_WILDCARD,
    conda:
        "../envs/pipeline.yaml"
    threads: 2
    params:
        iterations=config["time"]["iterations"],
    script:
        "../scripts/time_net.py"
