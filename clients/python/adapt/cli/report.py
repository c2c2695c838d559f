"""Human-readable reports: a model's evaluation (scores, per class, confusion matrix)."""
from __future__ import annotations

from typing import Any

from rich.table import Table

from adapt.cli._common import console
from adapt.types import Evaluation


def print_evaluation(ev: Evaluation) -> None:
    console.print(f"accuracy {ev.accuracy:.4f}   macro-F1 {ev.macro_f1:.4f}")
    per_class = Table("label", "precision", "recall", "f1", "support", title="per class",
                      title_justify="left")
    for label, s in ev.per_class.items():
        per_class.add_row(label, f"{s.precision:.4f}", f"{s.recall:.4f}", f"{s.f1:.4f}",
                          str(s.support))
    console.print(per_class)
    cm = ev.confusion_matrix
    matrix = Table("true \\ predicted", *cm.labels, title="confusion matrix",
                   title_justify="left")
    for label, row in zip(cm.labels, cm.matrix):
        matrix.add_row(label, *(str(v) for v in row))
    console.print(matrix)


def print_metrics(metrics: dict[str, Any]) -> None:
    """A job's final metrics, when its model has no evaluation report."""
    console.print("   ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in sorted(metrics.items())))
