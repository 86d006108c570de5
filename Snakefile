# safetygrid: is a model that is safe at full precision and greedy decoding still safe when it is
# quantized, its KV cache is quantized, and it is sampled?  See README.md and DESIGN.md.

configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/prompts.smk"
include: "rules/models.smk"
include: "rules/generate.smk"
include: "rules/judge.smk"
include: "rules/analyze.smk"


rule all:
    default_target: True
    input:
        REPORT,
