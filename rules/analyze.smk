rule aggregate:
    input:
        checkpoints=all_checkpoints(),
        prompts=PROMPT_FILES,
        votes=lambda w: cell_paths(f"{RESULTS}/votes/{CELL}.parquet"),
        generations=lambda w: cell_paths(f"{RESULTS}/generations/{CELL}.parquet"),
        timings=lambda w: cell_paths(f"{RESULTS}/benchmarks/generate/{CELL}.tsv"),
        quality=lambda w: quality_paths(),
    output:
        **{table: f"{RESULTS}/tables/{table}.parquet" for table in AGGREGATE_TABLES},
    params:
        baseline=config["baseline"],
        seed=config["seed"],
        bootstrap=config.get("bootstrap", {}),
        hidden_danger=config["hidden_danger"],
        judges=sorted(config["judges"]),
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
        cells=rules.aggregate.output.cells,
        contrasts=rules.aggregate.output.contrasts,
        skipped=rules.aggregate.output.skipped,
        tests=rules.aggregate.output.tests,
        hidden_danger=rules.aggregate.output.hidden_danger,
    output:
        html=REPORT,
        figures=directory(f"{RESULTS}/report/figures"),
    params:
        name=config.get("name", "safetygrid"),
        baseline=config["baseline"],
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
        checkpoints=all_checkpoints(),
        prompts=PROMPT_FILES,
        votes=lambda w: cell_paths(f"{RESULTS}/votes/{CELL}.parquet"),
        judgements=lambda w: [p for judge in sorted(config["judges"])
                              for p in cell_paths(f"{RESULTS}/judgements/{{judge}}/{CELL}.parquet", judge=judge)],
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
