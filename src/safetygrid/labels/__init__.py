"""Human labels on the run's own responses: the per-cell label sample, the user-owned label files
(never written by a rule), their join to the current responses (gold), inter-rater agreement, the
terminal labeller and scoring the judges against any labelled file.

Modules: ``files`` (the label file format with its four outcomes and three axes, load_labels),
``gold`` (gold per axis, inter_rater_kappa per axis),
``sample`` (label_sample's draw), ``store`` (atomic label saving), ``queue`` (what the labeller
shows), ``terminal`` (the labeller), ``score`` (`safetygrid judge --labels`), ``own`` (the gold
labels in the shapes judge validity and the prediction-powered estimates read).
"""

from .files import (AXES, DRAWS, LABEL_COLUMNS, OUTCOMES, RUBRICS_DIR, LabelError, label_file_paths, label_of_outcome,
                    load_labels, read_label_file, response_sha256, rubric_path, rubric_requires_outcome)
from .gold import (GOLD_COLUMNS, INTER_RATER_COLUMNS, LABEL_STATUS_COLUMNS, axis_values, gold, inter_rater_kappa,
                   label_status)
from .sample import SAMPLE_COLUMNS, draw_label_sample, write_label_sample

__all__ = ["AXES", "DRAWS", "GOLD_COLUMNS", "INTER_RATER_COLUMNS", "LABEL_COLUMNS", "LABEL_STATUS_COLUMNS", "OUTCOMES",
           "RUBRICS_DIR", "SAMPLE_COLUMNS", "LabelError", "axis_values", "draw_label_sample", "gold", "inter_rater_kappa",
           "label_status",
           "label_file_paths", "label_of_outcome", "load_labels", "read_label_file", "response_sha256", "rubric_path",
           "rubric_requires_outcome", "write_label_sample"]
