from safetygrid.io import write_parquet
from safetygrid.labels.own import own_gold, own_label_status
from safetygrid.logs import to_file

to_file(snakemake.log[0])
labels, generations = list(snakemake.input.labels), list(snakemake.input.generations)
write_parquet(own_gold(labels, generations), snakemake.output.gold)
write_parquet(own_label_status(labels, generations), snakemake.output.status)
