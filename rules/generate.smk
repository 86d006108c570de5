def generate_settings(w):
    """Only this cell's own entries: growing the grid must not change a finished cell's params."""
    model = config["models"][w.model]
    engine = engine_of(w.model, w.precision)
    return json.dumps({
        "cell": f"{w.model}/{w.precision}/{w.kv}/T{w.temperature}",
        "model": w.model, "engine": engine, "engine_options": model.get(engine, {}),
        "precision": config["precisions"][w.precision], "kv": config["kv"][w.kv],
        "temperature": w.temperature, "k": samples_for(w.temperature, config),
        "generation": config.get("generation", {}), "seed": config["seed"],
        # the hf engine's sampled cells name their sampler, so cells sampled with an earlier one are
        # rerun (their draws would no longer pair with new cells'); greedy cells and other engines
        # are untouched
        **({"sampler": HF_SAMPLER} if engine == "hf" and float(w.temperature) > 0 else {}),
        **({"schedule": LLAMA_CPP_SCHEDULE} if engine == "llama_cpp" else {}),
    }, sort_keys=True)


def engine_python(model, precision):
    """vLLM lives in its own environment (its pins conflict with llm-compressor's)."""
    return env_python("vllm") if engine_of(model, precision) == "vllm" else main_python()


rule generate:
    input:
        checkpoint=f"{RESULTS}/models/{{model}}/{{precision}}",
        prompts=PROMPT_FILES,
    output:
        f"{RESULTS}/generations/{CELL}.parquet",
    params:
        cell=generate_settings,
        python=lambda w: engine_python(w.model, w.precision),
    log:
        f"{RESULTS}/logs/generate/{CELL}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generate/{CELL}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: mem_mb_for(w.model, attempt),
        runtime=lambda w, attempt: 3 * runtime_for(w.model, attempt),
        gpu=GPUS_PER_MODEL_JOB,
        # a retried job (out of memory) runs with half the batch, then a quarter, ...; kept out of
        # params so that a cell finished on a retry is not rerun by the next invocation
        batch_divisor=lambda w, attempt: 2 ** (attempt - 1),
        **MODEL_JOB_PLACEMENT,
    retries: 2
    shell:
        "{params.python} workflow/scripts/generate.py --checkpoint {input.checkpoint:q} --prompts {input.prompts:q}"
        " --out {output:q} --log {log:q} --cell {params.cell:q} --batch-divisor {resources.batch_divisor}"
