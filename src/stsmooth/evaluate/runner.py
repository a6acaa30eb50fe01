"""One entry point over the evaluations, for ``stsmooth eval KIND CHECKPOINT``.

The command line builds the backbone and the ImageSets and calls
:func:`run_eval`; it prints :func:`format_table` of the result and writes the
same dict as JSON.
"""

from __future__ import annotations

import inspect
import math

from torch import nn

from stsmooth.evaluate.features import labelled_features
from stsmooth.evaluate.finetune import finetune
from stsmooth.evaluate.knn import knn
from stsmooth.evaluate.linear import linear_probe
from stsmooth.evaluate.lowshot import lowshot
from stsmooth.evaluate.retrieval import retrieval

KINDS = ("knn", "linear", "finetune", "retrieval", "lowshot")
FEATURE_OPTIONS = ("feature_batch_size", "device", "transform")
_ON_FEATURES = {"knn": knn, "linear": linear_probe, "retrieval": retrieval, "lowshot": lowshot}


def _method_options(fn, skip: int) -> list[str]:
    """Keyword names of ``fn`` after its first ``skip`` positional (data) arguments."""
    return list(inspect.signature(fn).parameters)[skip:]


def allowed_options(kind: str) -> list[str]:
    """Option names :func:`run_eval` accepts for ``kind``."""
    if kind == "finetune":
        return ["feature_batch_size", *(n for n in _method_options(finetune, 4) if n != "eval_batch_size")]
    if kind in _ON_FEATURES:
        return [*FEATURE_OPTIONS, *_method_options(_ON_FEATURES[kind], 4)]
    raise ValueError(f"evaluation kind must be one of {', '.join(KINDS)}; got {kind!r}")


def run_eval(kind: str, backbone: nn.Module, train, test, **options) -> dict:
    """Runs one evaluation of a frozen (or, for ``finetune``, trainable) backbone.

    Args:
        kind: ``knn`` | ``linear`` | ``finetune`` | ``retrieval`` | ``lowshot``.
        backbone: maps a float batch (B, C, H, W) to (B, D) features.
        train: ImageSet; the kNN neighbours, the classifier's training data,
            the retrieval database or the low-shot pool (unlabeled images dropped).
        test: ImageSet; the queries / test images.
        **options: ``feature_batch_size`` (images per forward pass when
            computing features), ``device``, ``transform``, plus the keyword
            arguments of :func:`knn`, :func:`linear_probe`, :func:`finetune`,
            :func:`retrieval` or :func:`lowshot`. ``num_classes`` defaults to
            ``train.num_classes``. Unknown names raise ValueError.

    Returns:
        The metrics dict of the chosen evaluation (see each function).
    """
    allowed = allowed_options(kind)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for eval {kind}; allowed: {', '.join(allowed)}")
    feature_batch_size = options.pop("feature_batch_size", 256)
    num_classes = getattr(train, "num_classes", None) or None
    if kind == "finetune":
        options.setdefault("num_classes", num_classes)
        if options["num_classes"] is None:
            raise ValueError("finetune needs num_classes (train has no class list)")
        return finetune(backbone, options.pop("num_classes"), train, test, eval_batch_size=feature_batch_size, **options)
    extraction = {name: options.pop(name) for name in ("device", "transform") if name in options}
    f_train, y_train = labelled_features(backbone, train, feature_batch_size, **extraction)
    f_test, y_test = labelled_features(backbone, test, feature_batch_size, **extraction)
    fn = _ON_FEATURES[kind]
    if "num_classes" in inspect.signature(fn).parameters:
        options.setdefault("num_classes", num_classes)
    return fn(f_train, y_train, f_test, y_test, **options)


def _cell(value) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value) or 0.01 <= abs(value) < 1e6:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def _render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(metrics: dict, key_name: str = "metric") -> str:
    """A plain-text table of a metrics dict.

    A flat dict gives two columns (name, value). A dict of dicts (low-shot:
    ``{k: {"top1": .., "std": ..}}``) gives one row per outer key and one
    column per scalar inner key; lists stay in the JSON only. Floats print
    with two decimals (three significant digits when tiny or huge).
    """
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f"metrics must be a non-empty dict; got {metrics!r}")
    nested = all(isinstance(v, dict) for v in metrics.values())
    if not nested:
        rows = [[key_name, "value"]] + [[str(k), _cell(v)] for k, v in metrics.items() if not isinstance(v, (dict, list, tuple))]
        return _render(rows)
    columns: list[str] = []
    for inner in metrics.values():
        columns += [c for c, v in inner.items() if c not in columns and not isinstance(v, (dict, list, tuple))]
    header = "shots" if all(isinstance(k, int) for k in metrics) else key_name
    rows = [[header, *columns]] + [[str(k), *(_cell(inner.get(c, "")) for c in columns)] for k, inner in metrics.items()]
    return _render(rows)
