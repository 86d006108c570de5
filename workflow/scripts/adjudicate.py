from safetygrid.analysis.adjudication import adjudicate
from safetygrid.logs import to_file

to_file(snakemake.log[0])
adjudicate(
    prompts=snakemake.input.prompts, votes=snakemake.input.votes, generations=snakemake.input.generations,
    judgements=snakemake.input.judgements, gold=snakemake.input.gold[0] if snakemake.input.gold else None,
    labels=list(snakemake.input.labels), limit=snakemake.params.n, worklist_out=snakemake.output.worklist,
    gold_out=snakemake.output.gold, inter_rater_out=snakemake.output.inter_rater, seed=snakemake.params.seed,
    resamples=snakemake.params.bootstrap["resamples"], level=snakemake.params.bootstrap["level"],
)
