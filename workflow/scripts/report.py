import pandas as pd

from safetygrid.analysis.aggregate import TABLES
from safetygrid.judges.family import same_family_judges
from safetygrid.logs import to_file
from safetygrid.models.fetch import RANDOM_PREFIX
from safetygrid.report import write_report

to_file(snakemake.log[0])
write_report(
    {**{table: pd.read_parquet(snakemake.input[table]) for table in TABLES},
     "judge_validity": pd.read_parquet(snakemake.input.judge_validity),
     "gold": pd.read_parquet(snakemake.input.gold), "worklist": pd.read_csv(snakemake.input.worklist),
     "inter_rater": pd.read_parquet(snakemake.input.inter_rater),
     **({"label_status": pd.read_parquet(snakemake.input.label_status[0])} if snakemake.input.label_status else {}),
     "same_family_judges": same_family_judges(snakemake.params.models, snakemake.params.judges,
                                              snakemake.params.judge_models)},
    name=snakemake.params.name, baseline=snakemake.params.baseline, html=snakemake.output.html,
    figures=snakemake.output.figures, thresholds=snakemake.params.hidden_danger,
    card_thresholds=snakemake.params.deployment, prompts=list(snakemake.input.prompts),
    level=snakemake.params.level,
    random_weights=[name for name, entry in {**snakemake.params.judge_models, **snakemake.params.models}.items()
                    if isinstance(entry["source"], str) and entry["source"].startswith(RANDOM_PREFIX)],
)
