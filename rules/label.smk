# Human labels on the run's own responses. label_sample draws, per cell, the responses a person
# labels (a uniformly random part for unbiased estimates, a targeted part for calibration); the labels
# themselves are made with `safetygrid label` into files under resources/labels/ that no rule writes.
# Each job reads only its own cell's generations and votes: growing the grid adds draws for the new
# cells and leaves every earlier draw as it was.


rule label_sample:
    input:
        generations=f"{RESULTS}/generations/{CELL}.parquet",
        votes=f"{RESULTS}/votes/{CELL}.parquet",
        prompts=PROMPT_FILES,
    output:
        f"{RESULTS}/labels/sample/{CELL}.parquet",
    params:
        seed=config["seed"],
        random_per_cell=config["labels"]["random_per_cell"],
        targeted_per_cell=config["labels"]["targeted_per_cell"],
    log:
        f"{RESULTS}/logs/label_sample/{CELL}.log",
    benchmark:
        f"{RESULTS}/benchmarks/label_sample/{CELL}.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/label_sample.py"


# `snakemake label_samples`: every supported cell's label sample (and what it needs), without the report
rule label_samples:
    input:
        lambda w: label_sample_paths(),
