"""Calibration after training: temperature scaling (Guo et al., "On Calibration of Modern Neural
Networks", ICML 2017) fitted on the validation logits, the expected calibration error before and
after, and optional per-class confidence thresholds below which a prediction is "unsure".

Temperature scaling divides every logit by one scalar T > 0: the predicted label never changes,
only how confident the probabilities are. T minimises the validation NLL (LBFGS on log T, the
standard fit: no maintained package does only this without heavy dependencies).
"""
import torch
from torch.nn import functional as F

ECE_BINS = 15
T_RANGE = (0.05, 20.0)  # beyond it the fit has run away (e.g. a perfectly separated val set)


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T that minimises the NLL of softmax(logits / T) on (logits, labels)."""
    logits, labels = logits.detach().float(), labels.long()
    if len(labels) == 0:
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(min(max(log_t.exp().item(), T_RANGE[0]), T_RANGE[1]))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> float:
    """ECE: the confidence-vs-accuracy gap over equal-width confidence bins, weighted by the
    share of examples in each bin (top-label confidence)."""
    if len(labels) == 0:
        return 0.0
    conf, pred = probs.float().max(-1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.float().mean() * (conf[inside].mean() - correct[inside].mean()).abs()
    return float(ece)


def class_thresholds(probs: torch.Tensor, labels: torch.Tensor,
                     target_precision: float) -> list[float | None]:
    """Per predicted class, the lowest confidence t such that the predictions of that class with
    confidence >= t reach target_precision on these examples (None: no threshold reaches it —
    every prediction of the class is then unsure; 0.0: all of them already do)."""
    conf, pred = probs.float().max(-1)
    out: list[float | None] = []
    for c in range(probs.shape[-1]):
        mine = pred == c
        c_conf, c_ok = conf[mine], (labels[mine] == c).float()
        order = c_conf.argsort(descending=True)
        c_conf, c_ok = c_conf[order], c_ok[order]
        precision = c_ok.cumsum(0) / torch.arange(1, len(c_ok) + 1)
        reach = (precision >= target_precision).nonzero()
        if len(c_ok) == 0:
            out.append(0.0)
        elif len(reach) == 0:
            out.append(None)
        else:
            k = int(reach.max())  # the most predictions kept while precision holds
            out.append(0.0 if k == len(c_ok) - 1 else round(float(c_conf[k]), 6))
    return out


def calibrate(logits: torch.Tensor, labels: torch.Tensor, names: list[str],
              target_precision: float | None = None) -> dict:
    """Fit T on every validation example; report ECE before (T = 1) and after. The "after" figure
    is cross-fitted (T fitted on one half, ECE measured on the other, both ways), so it measures
    held-out calibration, not how well T fits the examples it was fitted on."""
    logits, labels = logits.detach().float(), labels.long()
    t = fit_temperature(logits, labels)
    out = {"method": "temperature_scaling", "temperature": round(t, 6),
           "examples": len(labels), "bins": ECE_BINS,
           "ece_before": round(expected_calibration_error(logits.softmax(-1), labels), 6),
           "ece_after": round(_cross_fitted_ece(logits, labels), 6),
           "ece_after_fitted": "cross-fitted: T from one half of the validation set, ECE on the "
                               "other half, both ways"}
    if target_precision is not None:
        found = class_thresholds((logits / t).softmax(-1), labels, target_precision)
        out["target_precision"] = target_precision
        out["thresholds"] = {name: th for name, th in zip(names, found, strict=True)}
    return out


def _cross_fitted_ece(logits: torch.Tensor, labels: torch.Tensor) -> float:
    n = len(labels)
    if n < 4:
        return expected_calibration_error((logits / fit_temperature(logits, labels))
                                          .softmax(-1), labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    halves = (perm[: n // 2], perm[n // 2:])
    probs = torch.empty_like(logits)
    for fit_on, apply_to in (halves, halves[::-1]):
        t = fit_temperature(logits[fit_on], labels[fit_on])
        probs[apply_to] = (logits[apply_to] / t).softmax(-1)
    return expected_calibration_error(probs, labels)


def unsure(probs: torch.Tensor, min_confidence: float | None,
           thresholds: list[float | None] | None) -> list[bool]:
    """Per row: True when its top probability is below the caller's min_confidence, or (without
    one) below the learned threshold of its predicted class."""
    conf, pred = probs.float().max(-1)
    if min_confidence is not None:
        return (conf < min_confidence).tolist()
    if not thresholds:
        return [False] * len(conf)
    return [thresholds[p] is None or c < thresholds[p]
            for c, p in zip(conf.tolist(), pred.tolist(), strict=True)]
