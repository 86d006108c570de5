from safetygrid.labels import write_label_sample
from safetygrid.logs import to_file

to_file(snakemake.log[0])
write_label_sample(
    generations=snakemake.input.generations, votes=snakemake.input.votes, prompts=list(snakemake.input.prompts),
    cell={k: snakemake.wildcards[k] for k in ("model", "precision", "kv", "temperature")},
    seed=snakemake.params.seed, random_per_cell=snakemake.params.random_per_cell,
    targeted_per_cell=snakemake.params.targeted_per_cell, out=snakemake.output[0],
)
