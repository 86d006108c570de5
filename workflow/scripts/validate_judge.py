import pandas as pd

from safetygrid.io import write_parquet
from safetygrid.judges import FailurePolicy, make_judge
from safetygrid.judges.validation import label_validation_set
from safetygrid.logs import to_file

to_file(snakemake.log[0])
human = pd.read_parquet(snakemake.input.human)
# no borrowed rows (validation.sets all 0, as in the demo): nothing to score, so no model is loaded
judge = make_judge(snakemake.params.spec, snakemake.input.model[0] if snakemake.input.model else None) if len(human) else None
table = label_validation_set(judge, snakemake.wildcards.judge, human, FailurePolicy.from_spec(snakemake.params.spec))
write_parquet(table, snakemake.output[0])
