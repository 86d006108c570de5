"""Human labels on the run's own responses: the per-cell label sample, the user-owned label files
(never written by a rule), their join to the current responses (gold), inter-rater agreement, the
terminal labeller and scoring the judges against any labelled file.

Modules: ``files`` (the label file format, load_labels), ``gold`` (gold, inter_rater_kappa),
``sample`` (label_sample's draw), ``store`` (atomic label saving), ``queue`` (what the labeller
shows), ``terminal`` (the labeller), ``score`` (`safetygrid judge --labels`), ``own`` (the gold
labels in the shapes judge validity and the prediction-powered estimates read).
"""

from .files import (DRAWS, LABEL_COLUMNS, RUBRICS_DIR, LabelError, label_file_paths, load_labels,
                    read_label_file, response_sha256, rubric_path)
from .gold import GOLD_COLUMNS, INTER_RATER_COLUMNS, gold, inter_rater_kappa
from .sample import SAMPLE_COLUMNS, draw_label_sample, write_label_sample

__all__ = ["DRAWS", "GOLD_COLUMNS", "INTER_RATER_COLUMNS", "LABEL_COLUMNS", "RUBRICS_DIR", "SAMPLE_COLUMNS",
           "LabelError", "draw_label_sample", "gold", "inter_rater_kappa", "label_file_paths", "load_labels",
           "read_label_file", "response_sha256", "rubric_path", "write_label_sample"]
