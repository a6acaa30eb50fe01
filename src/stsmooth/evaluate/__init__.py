"""Evaluation of learned representations and of teacher smoothness.

On frozen features (backbone in eval mode, BatchNorm statistics fixed,
features computed once; paper 000 §4.1, paper 003 §5):

| function | protocol | paper |
|---|---|---|
| :func:`knn` | weighted cosine kNN, k=20, T=0.07, top-1/top-5 | 003 §5, Table 4 (InstDisc) |
| :func:`linear_probe` | linear classifier, SGD, cosine lr | 000 §4.1, 003 Table 2 |
| :func:`retrieval` | cosine ranking, mAP / recall over the top 1000 | 003 Table 4 |
| :func:`lowshot` | k = 1..16 per class, L2 logistic regression, C chosen on held-out training data, 5 draws | 003 Table 5 |

End to end: :func:`finetune` (whole network + fresh head, 003 Table 2).
Teacher smoothness between snapshots: :func:`param_msd`, :func:`output_msd`,
:func:`snapshot` (000 Fig. 3). :func:`run_eval` / :func:`format_table` serve
``stsmooth eval``.
"""

from stsmooth.evaluate.features import (
    eval_mode,
    extract_features,
    labelled_features,
)
from stsmooth.evaluate.finetune import finetune
from stsmooth.evaluate.knn import knn, knn_scores
from stsmooth.evaluate.linear import linear_probe, linear_probe_backbone, train_linear
from stsmooth.evaluate.lowshot import fit_logistic, lowshot
from stsmooth.evaluate.metrics import topk_accuracy
from stsmooth.evaluate.retrieval import retrieval
from stsmooth.evaluate.runner import KINDS, allowed_options, format_table, run_eval
from stsmooth.evaluate.smoothness import output_msd, param_msd, snapshot

__all__ = [
    "KINDS",
    "allowed_options",
    "eval_mode",
    "extract_features",
    "finetune",
    "fit_logistic",
    "format_table",
    "knn",
    "knn_scores",
    "labelled_features",
    "linear_probe",
    "linear_probe_backbone",
    "lowshot",
    "output_msd",
    "param_msd",
    "retrieval",
    "run_eval",
    "snapshot",
    "topk_accuracy",
    "train_linear",
]
