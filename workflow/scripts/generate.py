from safetygrid.generate import generate_cell
from safetygrid.io import write_parquet
from safetygrid.logs import to_file
from safetygrid.prompts import read_prompts

to_file(snakemake.log[0])
w, p = snakemake.wildcards, snakemake.params
table = generate_cell(
    snakemake.input.checkpoint, read_prompts(snakemake.input.prompts),
    model=w.model, engine=p.model.get("engine", "hf"), temperature=float(w.temperature), k=p.k,
    seed=p.seed, generation=p.generation, precision=p.precision, kv=p.kv,
)
write_parquet(table, snakemake.output[0])
