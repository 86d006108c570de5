rule fetch_model:
    output:
        directory(f"{RESULTS}/sources/{{model}}"),
    params:
        # a GGUF-only judge model's source carries its `weights: gguf`; every other source is the
        # entry's own string, so models fetched before `weights` existed are not fetched again
        source=lambda w: fetch_source(w.model),
    log:
        f"{RESULTS}/logs/fetch_model/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fetch_model/{{model}}.tsv"
    resources:
        mem_mb=lambda w, attempt: 2 * mem_mb_for(w.model, attempt),
        runtime=lambda w, attempt: runtime_for(w.model, attempt),
    script:
        "../workflow/scripts/fetch_model.py"


# A checkpoint: whether a (model, precision) is supported is known only after it ran, and the
# cells downstream are enumerated from its status.json.
checkpoint quantize:
    input:
        f"{RESULTS}/sources/{{model}}",
        # the calibration text of a GPTQ/AWQ precision: editing it requantizes (quantize.py takes it
        # after the source, so the command, and with it every finished checkpoint, stays as it was)
        lambda w: precision_files(config["precisions"][w.precision]),
    output:
        directory(f"{RESULTS}/models/{{model}}/{{precision}}"),
    params:
        spec=lambda w: quantize_spec(w.precision),
        python=env_python("quantize"),
    log:
        f"{RESULTS}/logs/quantize/{{model}}/{{precision}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/quantize/{{model}}/{{precision}}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: 3 * mem_mb_for(w.model, attempt),
        runtime=lambda w, attempt: 2 * runtime_for(w.model, attempt),
        gpu=GPUS_PER_MODEL_JOB,
        **MODEL_JOB_PLACEMENT,
    shell:
        "{params.python} workflow/scripts/quantize.py --source {input:q} --out {output:q}"
        " --spec {params.spec:q} > {log:q} 2>&1"


rule measure_quality:
    input:
        checkpoint=f"{RESULTS}/models/{{model}}/{{precision}}",
        text=config["quality"]["text"],
    output:
        f"{RESULTS}/quality/{{model}}/{{precision}}/{{kv}}.json",
    params:
        precision=lambda w: config["precisions"][w.precision],
        kv=lambda w: config["kv"][w.kv],
        chunk=config["quality"]["chunk"],
        max_tokens=config["quality"]["max_tokens"],
        device=config["generation"]["device"],
        # a cell served by llama.cpp is measured through llama.cpp (its GGUF and its KV cache)
        engine=lambda w: engine_of(w.model, w.precision),
    log:
        f"{RESULTS}/logs/measure_quality/{{model}}/{{precision}}/{{kv}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/measure_quality/{{model}}/{{precision}}/{{kv}}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: mem_mb_for(w.model, attempt),
        runtime=lambda w, attempt: runtime_for(w.model, attempt),
        gpu=GPUS_PER_MODEL_JOB,
        **MODEL_JOB_PLACEMENT,
    script:
        "../workflow/scripts/measure_quality.py"


def task_files(wildcards=None):
    """The local task YAMLs and their data (quality.task_paths), so editing a smoke task reruns it."""
    files = []
    for folder in config["quality"]["task_paths"]:
        files += sorted(str(p) for p in Path(folder).rglob("*") if p.is_file())
    return files


# Task accuracy through lm-evaluation-harness, one job per (model, precision): its params are that
# precision's entry, the engine serving it and the quality.tasks settings, never the grid's lists.
rule measure_tasks:
    input:
        checkpoint=f"{RESULTS}/models/{{model}}/{{precision}}",
        tasks=task_files,
    output:
        f"{RESULTS}/quality/{{model}}/{{precision}}.tasks.json",
    params:
        tasks=config["quality"]["tasks"],
        task_paths=config["quality"]["task_paths"],
        limit=config["quality"]["limit"],
        num_fewshot=config["quality"]["num_fewshot"],
        seed=config["quality"]["seed"] if config["quality"]["seed"] is not None else config["seed"],
        batch_size=config["quality"]["batch_size"],
        precision=lambda w: config["precisions"][w.precision],
        device=config["generation"]["device"],
        engine=lambda w: engine_of(w.model, w.precision),
        # the model's options for that engine (llama_cpp: n_ctx, n_batch, n_threads, n_gpu_layers)
        engine_options=lambda w: config["models"][w.model].get(engine_of(w.model, w.precision), {}),
    log:
        f"{RESULTS}/logs/measure_tasks/{{model}}/{{precision}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/measure_tasks/{{model}}/{{precision}}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: mem_mb_for(w.model, attempt),
        runtime=lambda w, attempt: runtime_for(w.model, attempt),
        gpu=GPUS_PER_MODEL_JOB,
        **MODEL_JOB_PLACEMENT,
    script:
        "../workflow/scripts/measure_tasks.py"
