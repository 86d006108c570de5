from safetygrid.io import write_parquet
from safetygrid.labels.own import own_gold
from safetygrid.logs import to_file

to_file(snakemake.log[0])
write_parquet(own_gold(list(snakemake.input.labels), list(snakemake.input.generations)), snakemake.output[0])
