from pathlib import Path

from safetygrid.io import write_json
from safetygrid.logs import to_file
from safetygrid.quality import perplexity

to_file(snakemake.log[0])
p = snakemake.params
result = perplexity(snakemake.input.checkpoint, Path(snakemake.input.text).read_text(encoding="utf-8"), kv=p.kv,
                    dtype=p.precision.get("dtype"), device=p.device, chunk=p.chunk, max_tokens=p.max_tokens,
                    engine=p.engine)
write_json(result, snakemake.output[0])
