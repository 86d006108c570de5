rule aggregate:
    input:
        checkpoints=all_checkpoints(),
        prompts=PROMPT_FILES,
        votes=lambda w: cell_paths(f"{RESULTS}/votes/{CELL}.parquet"),
        generations=lambda w: cell_paths(f"{RESULTS}/generations/{CELL}.parquet"),
        timings=lambda w: cell_paths(f"{RESULTS}/benchmarks/generate/{CELL}.tsv"),
        quality=lambda w: quality_paths(),
        judgements=lambda w: judgement_paths(),
        # always, unlike the votes: the deployment card reads from it whether the judges agree with
        # labels of this run's own responses, on each axis, even when no vote is calibrated
        calibration=CALIBRATION,
        gold=own_gold_input,
    output:
        **{table: f"{RESULTS}/tables/{table}.parquet" for table in AGGREGATE_TABLES},
    params:
        baseline=config["baseline"],
        seed=config["seed"],
        bootstrap=config.get("bootstrap", {}),
        hidden_danger=config["hidden_danger"],
        deployment=config["deployment_card"],
        judges=sorted(config["judges"]),
        skipped_cells=lambda w: skipped_engine_cells(),
        # how the votes were made: the labelled responses' cross-fitted votes (prediction-powered estimates)
        ensemble={"vote_threshold": config["vote_threshold"], "lead": config["ensemble_label"],
                  "folds": config["validation"]["folds"], "refusal_judges": config.get("refusal_judges")},
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow/scripts/aggregate.py"


rule report:
    input:
        **{table: f"{RESULTS}/tables/{table}.parquet" for table in AGGREGATE_TABLES},
        judge_validity=JUDGE_VALIDITY,
        gold=f"{RESULTS}/adjudication/gold.parquet",
        inter_rater=f"{RESULTS}/adjudication/inter_rater.parquet",
        worklist=f"{RESULTS}/adjudication/worklist.csv",
        prompts=PROMPT_FILES,
        label_status=lambda w: [LABEL_STATUS] if LABEL_FILES else [],
    output:
        # registered with report() too, so `snakemake --report report.zip` packages them
        html=report(REPORT, caption="../workflow/report/page.rst", category="Report"),
        figures=report(directory(f"{RESULTS}/report/figures"), patterns=["{name}.png"],
                       caption="../workflow/report/figures.rst", category="Figures"),
    params:
        name=config.get("name", "safetygrid"),
        baseline=config["baseline"],
        hidden_danger=config["hidden_danger"],
        deployment=config["deployment_card"],
        level=config["bootstrap"]["level"],
        # which models are judged by a judge of their own family (the report flags them)
        models=config["models"],
        judges=config["judges"],
        judge_models=config.get("judge_models", {}),
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow/scripts/report.py"


rule archive:
    input:
        report=REPORT,
        tables=rules.aggregate.output,
        validity=[JUDGE_VALIDITY, CALIBRATION, HUMAN_LABELS],
        gold=own_gold_input,
        checkpoints=all_checkpoints(),
        prompts=PROMPT_FILES,
        votes=lambda w: cell_paths(f"{RESULTS}/votes/{CELL}.parquet"),
        judgements=lambda w: judgement_paths(),
        generations=lambda w: cell_paths(f"{RESULTS}/generations/{CELL}.parquet"),
        quality=lambda w: quality_paths(),
    output:
        f"{RESULTS}/archive/{config['name']}.tar.gz",
    params:
        config=config,
        results=RESULTS,
    log:
        f"{RESULTS}/logs/archive.log",
    benchmark:
        f"{RESULTS}/benchmarks/archive.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../workflow/scripts/archive.py"


def gold_input(wildcards):
    gold = config["adjudication"]["gold"]
    return [gold] if gold else []


rule adjudicate:
    input:
        prompts=PROMPT_FILES,
        votes=lambda w: cell_paths(f"{RESULTS}/votes/{CELL}.parquet"),
        generations=lambda w: cell_paths(f"{RESULTS}/generations/{CELL}.parquet"),
        judgements=lambda w: judgement_paths(),
        gold=gold_input,
        # own labels (user-owned files no rule writes) and the rubrics they name
        labels=LABEL_FILES,
        rubrics=RUBRIC_FILES,
    output:
        # a worklist, rewritten every run: labels never live in it (`safetygrid label --worklist` writes
        # them to resources/labels/)
        worklist=f"{RESULTS}/adjudication/worklist.csv",
        gold=f"{RESULTS}/adjudication/gold.parquet",
        inter_rater=f"{RESULTS}/adjudication/inter_rater.parquet",
    params:
        n=config["adjudication"]["n"],
        seed=config["seed"],
        bootstrap=config["bootstrap"],
    log:
        f"{RESULTS}/logs/adjudicate.log",
    benchmark:
        f"{RESULTS}/benchmarks/adjudicate.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow/scripts/adjudicate.py"
