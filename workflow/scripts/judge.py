import pandas as pd

from safetygrid.io import write_parquet
from safetygrid.judges import FailurePolicy, judge_table, make_judge
from safetygrid.logs import to_file
from safetygrid.prompts import read_prompts

to_file(snakemake.log[0])
judge = make_judge(snakemake.params.spec, snakemake.input.model[0] if snakemake.input.model else None)
table = judge_table(judge, snakemake.wildcards.judge, pd.read_parquet(snakemake.input.generations),
                    read_prompts(snakemake.input.prompts), FailurePolicy.from_spec(snakemake.params.spec))
write_parquet(table, snakemake.output[0])
