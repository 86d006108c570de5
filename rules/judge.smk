rule judge:
    input:
        generations=f"{RESULTS}/generations/{CELL}.parquet",
        prompts=PROMPT_FILES,
        model=lambda w: judge_model_input(w.judge),
        # its template, native prompts or refusal strings: editing one reruns exactly its jobs
        resources=lambda w: judge_files(config["judges"][w.judge]),
    output:
        f"{RESULTS}/judgements/{{judge}}/{CELL}.parquet",
    params:
        spec=lambda w: config["judges"][w.judge],
    log:
        f"{RESULTS}/logs/judge/{{judge}}/{CELL}.log",
    benchmark:
        f"{RESULTS}/benchmarks/judge/{{judge}}/{CELL}.tsv"
    # a cell's judges and its vote are one SLURM job (a group job), not seven small ones
    group:
        "judge_cell"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: judge_mem_mb(w.judge, attempt),
        runtime=lambda w, attempt: 60 * attempt,
        gpu=lambda w: GPUS_PER_MODEL_JOB if "model" in config["judges"][w.judge] else 0,
        **MODEL_JOB_PLACEMENT,
    script:
        "../workflow/scripts/judge.py"


rule vote:
    input:
        # the ensemble is the set of judges: a new judge changes every vote, by definition
        judgements=expand(f"{RESULTS}/judgements/{{judge}}/{CELL}.parquet", judge=sorted(config["judges"]),
                          allow_missing=True),
        calibration=calibration_input,
    output:
        f"{RESULTS}/votes/{CELL}.parquet",
    params:
        threshold=config["vote_threshold"],
        lead=config["ensemble_label"],
        refusal_judges=config.get("refusal_judges"),
    log:
        f"{RESULTS}/logs/vote/{CELL}.log",
    benchmark:
        f"{RESULTS}/benchmarks/vote/{CELL}.tsv"
    # with own labels the vote reads the calibration fitted on the labelled cells' judgements, the
    # other cells' judge jobs among them, so it cannot share its cell's group job (Snakemake refuses
    # a group whose outside inputs depend on the group); it then runs alone (seconds)
    group:
        None if LABEL_FILES else "judge_cell"
    resources:
        mem_mb=1000,
        runtime=10,
        **MODEL_JOB_PLACEMENT,
    script:
        "../workflow/scripts/vote.py"
