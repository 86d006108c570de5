import logging

import pandas as pd

from safetygrid.io import write_json, write_parquet
from safetygrid.labels.own import own_judge_labels, own_validation_rows, read_cell_files
from safetygrid.ensemble import validity
from safetygrid.logs import to_file

to_file(snakemake.log[0])
labelled = pd.concat([pd.read_parquet(p) for p in snakemake.input.labels], ignore_index=True)
gold = pd.read_parquet(snakemake.input.gold[0]) if snakemake.input.gold else None
own, own_labelled = None, None
if gold is not None and len(gold):
    own = own_validation_rows(gold)
    own_labelled = own_judge_labels(read_cell_files(snakemake.input.own_judgements), gold)
table, calibration = validity(pd.read_parquet(snakemake.input.human), labelled, snakemake.params.judges,
                              own=own, own_labelled=own_labelled, own_min=snakemake.params.own_min,
                              lead=snakemake.params.lead, vote_threshold=snakemake.params.vote_threshold,
                              folds=snakemake.params.folds, seed=snakemake.params.seed,
                              resamples=snakemake.params.bootstrap.get("resamples", 2000),
                              level=snakemake.params.bootstrap.get("level", 0.95))
logging.getLogger("calibrate_judges").info(
    "judge validity against human labels (calibration fitted on %s labels, %d own of %d needed):\n%s",
    calibration["fitted_on"], calibration["n_own"], calibration["own_min"],
    table[["rater", "target", "labels", "measured_on", "fitted_on", "n", "accuracy", "kappa", "tpr", "fpr", "auc",
           "threshold", "lead"]].to_string(index=False))
write_parquet(table, snakemake.output.table)
write_json(calibration, snakemake.output.calibration)
