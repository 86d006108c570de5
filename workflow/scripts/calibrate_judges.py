import logging

import pandas as pd

from safetygrid.io import write_json, write_parquet
from safetygrid.judges.validity import validity
from safetygrid.logs import to_file

to_file(snakemake.log[0])
labelled = pd.concat([pd.read_parquet(p) for p in snakemake.input.labels], ignore_index=True)
table, calibration = validity(pd.read_parquet(snakemake.input.human), labelled, snakemake.params.judges,
                              lead=snakemake.params.lead, vote_threshold=snakemake.params.vote_threshold,
                              folds=snakemake.params.folds, seed=snakemake.params.seed,
                              resamples=snakemake.params.bootstrap.get("resamples", 2000),
                              level=snakemake.params.bootstrap.get("level", 0.95))
logging.getLogger("calibrate_judges").info("judge validity against human labels:\n%s", table[
    ["rater", "target", "labels", "n", "accuracy", "kappa", "tpr", "fpr", "auc", "threshold", "lead"]].to_string(index=False))
write_parquet(table, snakemake.output.table)
write_json(calibration, snakemake.output.calibration)
