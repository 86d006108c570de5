from safetygrid.io import write_parquet
from safetygrid.logs import to_file
from safetygrid.prompts import load_promptset

to_file(snakemake.log[0])
table = load_promptset(snakemake.wildcards.promptset, snakemake.params.n, snakemake.params.seed)
write_parquet(table, snakemake.output[0])
