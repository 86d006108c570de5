import pandas as pd

from safetygrid.analysis.aggregate import aggregate
from safetygrid.io import read_json
from safetygrid.logs import to_file

to_file(snakemake.log[0])
aggregate(
    checkpoints=snakemake.input.checkpoints, prompts=snakemake.input.prompts, votes=snakemake.input.votes,
    generations=snakemake.input.generations, timings=snakemake.input.timings, quality=snakemake.input.quality,
    judges=snakemake.params.judges, baseline=snakemake.params.baseline, seed=snakemake.params.seed,
    bootstrap=snakemake.params.bootstrap, hidden_danger=snakemake.params.hidden_danger,
    judgements=snakemake.input.judgements, deployment=snakemake.params.deployment,
    skipped_cells=snakemake.params.skipped_cells,
    calibration=read_json(snakemake.input.calibration),
    gold=pd.read_parquet(snakemake.input.gold[0]) if snakemake.input.gold else None,
    ensemble=snakemake.params.ensemble,
    out=snakemake.output,
)
