from safetygrid.io import write_json
from safetygrid.logs import to_file
from safetygrid.quality import task_accuracy

to_file(snakemake.log[0])
p = snakemake.params
w = snakemake.wildcards
result = task_accuracy(snakemake.input.checkpoint, p.tasks, engine=p.engine, task_paths=p.task_paths, limit=p.limit,
                       num_fewshot=p.num_fewshot, seed=p.seed, batch_size=p.batch_size,
                       dtype=p.precision.get("dtype"), device=p.device, engine_options=p.engine_options,
                       label=f"model {w.model}, precision {w.precision}")
write_json(result, snakemake.output[0])
