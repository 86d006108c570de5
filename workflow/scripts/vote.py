import pandas as pd

from safetygrid.io import read_json, write_parquet
from safetygrid.logs import to_file
from safetygrid.ensemble import vote

to_file(snakemake.log[0])
calibration = read_json(snakemake.input.calibration[0]) if snakemake.input.calibration else None
votes = vote([pd.read_parquet(p) for p in snakemake.input.judgements], snakemake.params.threshold,
             calibration=calibration, lead=snakemake.params.lead,
             refusal_judges=snakemake.params.refusal_judges)
write_parquet(votes, snakemake.output[0])
