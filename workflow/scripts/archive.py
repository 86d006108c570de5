from safetygrid.analysis.aggregate import cell_of
from safetygrid.archive import write_archive
from safetygrid.logs import to_file

to_file(snakemake.log[0])
root = f"{snakemake.params.results}/votes"
write_archive(config=dict(snakemake.params.config), cells=[cell_of(p, root) for p in snakemake.input.votes],
              results=snakemake.params.results, out=snakemake.output[0])
