import pandas as pd

from safetygrid.io import write_parquet
from safetygrid.logs import to_file
from safetygrid.vote import vote

to_file(snakemake.log[0])
write_parquet(vote([pd.read_parquet(p) for p in snakemake.input], snakemake.params.threshold), snakemake.output[0])
