"""Classification metrics computed from label indices: accuracy, macro-F1, per class, confusion."""
from collections.abc import Sequence


def classification_report(y_true: Sequence[int], y_pred: Sequence[int],
                          labels: Sequence[str]) -> dict:
    """The evaluation body of the API: accuracy, macro_f1, per_class, confusion_matrix."""
    k = len(labels)
    matrix = [[0] * k for _ in range(k)]
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[t][p] += 1
    per_class, f1s = {}, []
    for i, name in enumerate(labels):
        tp = matrix[i][i]
        predicted = sum(matrix[r][i] for r in range(k))
        support = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        f1s.append(f1)
    total = len(y_true)
    accuracy = sum(matrix[i][i] for i in range(k)) / total if total else 0.0
    return {
        "accuracy": accuracy,
        "macro_f1": sum(f1s) / k if k else 0.0,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "matrix": matrix},
    }
