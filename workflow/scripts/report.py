import pandas as pd

from safetygrid.logs import to_file
from safetygrid.report import write_report

to_file(snakemake.log[0])
write_report(
    cells=pd.read_parquet(snakemake.input.cells), contrasts=pd.read_parquet(snakemake.input.contrasts),
    skipped=pd.read_parquet(snakemake.input.skipped), name=snakemake.params.name,
    baseline=snakemake.params.baseline, html=snakemake.output.html, figures=snakemake.output.figures,
    tests=pd.read_parquet(snakemake.input.tests), hidden_danger=pd.read_parquet(snakemake.input.hidden_danger),
)
