rule generate:
    input:
        checkpoint=f"{RESULTS}/models/{{model}}/{{precision}}",
        prompts=PROMPT_FILES,
    output:
        f"{RESULTS}/generations/{CELL}.parquet",
    params:
        # only this cell's own entries: growing the grid must not change a finished cell's params
        model=lambda w: config["models"][w.model],
        precision=lambda w: config["precisions"][w.precision],
        kv=lambda w: config["kv"][w.kv],
        k=lambda w: samples_for(w.temperature, config),
        generation=config.get("generation", {}),
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/generate/{CELL}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate/{CELL}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: mem_mb_for(w.model, attempt),
        runtime=lambda w, attempt: 3 * runtime_for(w.model, attempt),
        gpu=GPUS_PER_MODEL_JOB,
        **MODEL_JOB_PLACEMENT,
    script:
        "../workflow/scripts/generate.py"
