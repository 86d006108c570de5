rule prepare_prompts:
    output:
        f"{RESULTS}/prompts/{{promptset}}.parquet",
    params:
        n=lambda w: promptset_n(w.promptset),
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/prepare_prompts/{{promptset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_prompts/{{promptset}}.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/prepare_prompts.py"
