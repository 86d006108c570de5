from safetygrid.analysis.adjudication import adjudicate
from safetygrid.logs import to_file

to_file(snakemake.log[0])
adjudicate(
    prompts=snakemake.input.prompts, votes=snakemake.input.votes, generations=snakemake.input.generations,
    judgements=snakemake.input.judgements, gold=snakemake.input.gold[0] if snakemake.input.gold else None,
    limit=snakemake.params.n, to_label_out=snakemake.output.to_label, gold_out=snakemake.output.gold,
)
