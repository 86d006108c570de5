# safetygrid: is a model that is safe at full precision and greedy decoding still safe when it is
# quantized, its KV cache is quantized, and it is sampled?  See README.md and DESIGN.md.

# --configfile replaces the default grid instead of being merged into it: a grid holds exactly the
# models, precisions and judges its own file names.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"

include: "rules/common.smk"
include: "rules/prompts.smk"
include: "rules/models.smk"
include: "rules/generate.smk"
include: "rules/judge.smk"
include: "rules/label.smk"
include: "rules/validate.smk"
include: "rules/analyze.smk"


# Never submitted to a cluster: fetching needs the network (which compute nodes often lack), and the
# others take seconds, less than a queue wait.
localrules:
    all,
    prepare_prompts,
    prepare_benchmark_prompts,
    prepare_validation,
    fetch_model,
    calibrate_judges,
    label_sample,
    label_samples,
    aggregate,
    adjudicate,
    report,
    archive,


rule all:
    default_target: True
    input:
        # the checkpoints are named here too: a dry run then shows a new precision's quantize job
        # (the tables' input functions cannot list its cells before it has run)
        all_checkpoints(),
        REPORT,
        # each cell's label sample, for `safetygrid label`
        lambda w: label_sample_paths(),
        # the archival package too, when the config asks for it (`snakemake archive` makes it anyway)
        [rules.archive.output[0]] if config["archive"] else [],
