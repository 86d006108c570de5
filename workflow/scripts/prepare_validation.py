from safetygrid.io import write_parquet
from safetygrid.judges.validation import load_validation_set
from safetygrid.logs import to_file

to_file(snakemake.log[0])
table = load_validation_set(snakemake.params.sets, snakemake.input.labelled, seed=snakemake.params.seed)
write_parquet(table, snakemake.output[0])
