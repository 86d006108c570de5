import logging
from pathlib import Path

from safetygrid.logs import to_file
from safetygrid.models import fetch_model

to_file(snakemake.log[0])
out = Path(snakemake.output[0])
info = fetch_model(snakemake.params.source, out, work_dir=out.parent / f".{out.name}.download")
logging.getLogger("fetch_model").info("%s", info)
