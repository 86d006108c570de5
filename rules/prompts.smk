# Two rules write results/prompts/{promptset}.parquet, told apart by the set's name. The sets whose
# picks take a selection (split, categories, copyright) are prepared by prepare_benchmark_prompts;
# prepare_prompts, its params and its script are left as they were before those sets existed, so a
# grid of the older sets keeps its finished prompt files, and with them every finished cell.
rule prepare_prompts:
    input:
        # benign_local's CSV in resources/prompts (the other sets come from version-pinned wheels)
        lambda w: promptset_files(w.promptset),
    output:
        f"{RESULTS}/prompts/{{promptset}}.parquet",
    wildcard_constraints:
        promptset="|".join(name for name in PROMPTSETS if name not in SELECTABLE),
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


rule prepare_benchmark_prompts:
    output:
        f"{RESULTS}/prompts/{{promptset}}.parquet",
    wildcard_constraints:
        promptset="|".join(SELECTABLE),
    params:
        n=lambda w: promptset_n(w.promptset),
        seed=config["seed"],
        selection=lambda w: promptset_selection(w.promptset),
    log:
        f"{RESULTS}/logs/prepare_prompts/{{promptset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_prompts/{{promptset}}.tsv"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow/scripts/prepare_benchmark_prompts.py"
