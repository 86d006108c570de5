# Judges against people: a human-labelled set, labelled once by every judge (independent of the
# grid: a new model, precision or temperature never reruns these), then each judge and ensemble
# scored, calibrated judges' thresholds and the stacked ensemble fitted (cross-fitted for the scores).
# With labels of the run's own responses (labels.files), every judge is scored on them too, and the
# calibration is fitted on them once there are labels.own_min.


rule prepare_validation:
    input:
        labelled=config["validation"]["labelled"],
    output:
        HUMAN_LABELS,
    params:
        sets=config["validation"]["sets"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/prepare_validation.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_validation.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/prepare_validation.py"


rule validate_judge:
    input:
        human=HUMAN_LABELS,
        model=lambda w: judge_model_input(w.judge),
        # its template, native prompts or refusal strings: editing one reruns exactly its jobs
        resources=lambda w: judge_files(config["judges"][w.judge]),
    output:
        f"{RESULTS}/validity/{{judge}}.parquet",
    params:
        spec=lambda w: config["judges"][w.judge],
    log:
        f"{RESULTS}/logs/validate_judge/{{judge}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/validate_judge/{{judge}}.tsv"
    threads: 2
    resources:
        mem_mb=lambda w, attempt: judge_mem_mb(w.judge, attempt),
        runtime=lambda w, attempt: 60 * attempt,
        gpu=lambda w: GPUS_PER_MODEL_JOB if "model" in config["judges"][w.judge] else 0,
        **MODEL_JOB_PLACEMENT,
    script:
        "../workflow/scripts/validate_judge.py"


rule own_gold:
    # the user's labels joined to the current text of the responses they label: stale labels
    # (the text changed) and raters' ties are counted and left out
    input:
        labels=LABEL_FILES,
        generations=lambda w: labelled_cell_paths(f"{RESULTS}/generations/{CELL}.parquet"),
    output:
        gold=OWN_GOLD,
        # per cell: label rows, current and stale; the report opens with it when a label went stale
        status=LABEL_STATUS,
    log:
        f"{RESULTS}/logs/own_gold.log",
    benchmark:
        f"{RESULTS}/benchmarks/own_gold.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/own_gold.py"


rule calibrate_judges:
    input:
        human=HUMAN_LABELS,
        labels=expand(f"{RESULTS}/validity/{{judge}}.parquet", judge=sorted(config["judges"])),
        gold=own_gold_input,
        own_judgements=own_judgement_paths,
    output:
        table=JUDGE_VALIDITY,
        calibration=CALIBRATION,
    params:
        judges=config["judges"],
        lead=config["ensemble_label"],
        vote_threshold=config["vote_threshold"],
        folds=config["validation"]["folds"],
        own_min=config["labels"]["own_min"],
        seed=config["seed"],
        bootstrap=config["bootstrap"],
    log:
        f"{RESULTS}/logs/calibrate_judges.log",
    benchmark:
        f"{RESULTS}/benchmarks/calibrate_judges.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/calibrate_judges.py"
