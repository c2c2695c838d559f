"""Which base model will transfer best: scores computed from a frozen model's features alone.

LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
ICML 2021) is the log marginal likelihood (evidence) per example of a Bayesian linear model on the
features, maximised over its two hyperparameters and averaged over one-hot class targets; the
k-NN probe is leave-one-out k-nearest-neighbour accuracy on the same features (cosine).

Both take an (n, d) feature matrix F and label indices. For each class, with y its 0/1 target:

    y = F w + e,   w ~ N(0, I / alpha),   e ~ N(0, I / beta)
    L(alpha, beta) = d/2 log alpha + n/2 log beta - n/2 log 2 pi
                     - beta/2 |F m - y|^2 - alpha/2 |m|^2 - 1/2 log det A
    A = alpha I_d + beta F^T F,   m = beta A^-1 F^T y

With F = U diag(s) V^T (k = min(n, d) singular values, sigma_i = s_i^2) and x = U^T y:
    log det A = sum_{i<=k} log(alpha + beta sigma_i) + (d - k) log alpha
    |m|^2 = sum sigma_i x_i^2 / (sigma_i + t)^2,   |F m - y|^2 = sum x_i^2 t^2 / (sigma_i + t)^2 + r
where t = alpha / beta and r = |y|^2 - |x|^2 is the part of y outside the span of F.

Setting dL/dalpha = 0 (m is the minimiser of the quadratic terms, so its own dependence on alpha
drops out) gives k/2alpha - 1/2 sum_i 1/(alpha + beta sigma_i) - |m|^2 / 2 = 0 once the
(d - k)/2alpha from the first term meets the -(d - k)/2alpha from the zero singular directions of
log det A, i.e. alpha |m|^2 = gamma with gamma = sum_i beta sigma_i / (alpha + beta sigma_i);
dL/dbeta = 0 gives beta |F m - y|^2 = n - gamma. Hence the fixed point
    alpha <- gamma / |m|^2,   beta <- (n - gamma) / |F m - y|^2.

The reference implementation's fixed-point version (thuml/LogME `_fit_fixed_point`, on a
truncated SVD of rank k <= min(n, d)) sums log(alpha + beta sigma_i) over the k non-zero singular
values only; when n < d its evidence drops the -(d - k)/2 log alpha of the d - k zero directions
of F^T F, so the value it reports is not the function its fixed point maximises (its stationary
point would need alpha |m|^2 = gamma + d - k), and it over-scores wide features on small
datasets. (Its first, ICML version decomposed the full d x d F^T F and kept the term.)
Here the term is kept; tests/ml/test_selection.py checks the result against a brute-force
maximisation of the exact Gaussian marginal likelihood for n > d and n < d.
"""
import hashlib
import time
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from app.ml import data as D
from app.ml import modeling, vision
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.feature_cache import FeatureCache, example_key
from app.ml.tasks import TextTask

EPS = 1e-12


def _spectrum(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(sigma, basis, wide): eigenvalues of the smaller Gram matrix and its eigenvectors — V
    (d x d) of F^T F when n > d, U (n x n) of F F^T otherwise."""
    n, d = f.shape
    wide = n <= d
    sigma, basis = np.linalg.eigh(f @ f.T if wide else f.T @ f)
    return np.clip(sigma, 0.0, None), basis, wide


def _profile(log_t: np.ndarray, sigma: np.ndarray, x2: np.ndarray, rest: float, n: int,
             k: int) -> np.ndarray:
    """The evidence maximised over beta for each t = alpha / beta (per example): with
    S(t) = |F m - y|^2 + t |m|^2 = sum x_i^2 t / (sigma_i + t) + r, dL/dbeta = 0 gives
    beta = n / S(t), and L(t) = n/2 log(n / S) - n/2 + k/2 log t - 1/2 sum log(t + sigma_i)
    - n/2 log 2 pi (the d/2 log alpha and (d - k)/2 log alpha of log det A leave k/2 log t)."""
    t = np.exp(log_t)[:, None]
    s_t = (x2 * t / (sigma + t)).sum(axis=1) + rest
    return (n / 2 * np.log(n / np.maximum(s_t, EPS)) - n / 2 + k / 2 * log_t
            - 0.5 * np.log(sigma + t).sum(axis=1) - n / 2 * np.log(2 * np.pi)) / n


def _class_evidence(sigma: np.ndarray, x2: np.ndarray, rest: float, n: int, d: int,
                    max_iter: int = 100, tol: float = 1e-10) -> tuple[float, float, float]:
    """(evidence / n, alpha, beta) for one target at the maximum over t = alpha / beta: a grid
    over log t, then golden-section search around its best point. This finds the stationary
    point of the fixed point above (alpha |m|^2 = gamma, beta |F m - y|^2 = n - gamma) in a
    fixed few dozen O(k) evaluations, also where the fixed point crawls towards alpha -> oo (a
    target the features do not explain: thousands of iterations)."""
    k = len(sigma)
    centre = np.log(max(float(sigma.max()), EPS))
    grid = np.linspace(centre - 30, centre + 30, 61)
    i = int(np.argmax(_profile(grid, sigma, x2, rest, n, k)))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(max_iter):
        if hi - lo < tol:
            break
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        fa, fb = _profile(np.array([a, b]), sigma, x2, rest, n, k)
        lo, hi = (lo, b) if fa >= fb else (a, hi)
    log_t = (lo + hi) / 2
    evidence = float(_profile(np.array([log_t]), sigma, x2, rest, n, k)[0])
    t = float(np.exp(log_t))
    beta = n / max(float((x2 * t / (sigma + t)).sum()) + rest, EPS)
    return evidence, t * beta, beta


def logme(features, labels) -> float:
    """LogME of (n, d) features for integer labels: the mean over classes of the maximised
    evidence per example (higher transfers better; comparable across models on one dataset)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    n, d = f.shape
    sigma, basis, wide = _spectrum(f)
    proj = None if wide else f @ basis  # column i = s_i u_i
    scores = []
    for c in np.unique(y):
        target = (y == c).astype(np.float64)
        if wide:
            x2 = (basis.T @ target) ** 2
        else:
            z2 = (proj.T @ target) ** 2
            x2 = np.where(sigma > EPS * max(sigma.max(), 1.0), z2 / np.maximum(sigma, EPS), 0.0)
        rest = max(float(target @ target - x2.sum()), 0.0)
        scores.append(_class_evidence(sigma, x2, rest, n, d)[0])
    return float(np.mean(scores))


def knn_accuracy(features, labels, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity (votes tie-broken by similarity)."""
    f = torch.nn.functional.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float32),
                                      dim=1)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n = len(y)
    if n < 2:
        return 0.0
    k = min(k, n - 1)
    classes = int(y.max()) + 1
    correct = 0
    for start in range(0, n, 1024):  # bounded memory: 1024 x n similarities at a time
        sim = f[start:start + 1024] @ f.T
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + start] = -float("inf")  # leave the example itself out
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], classes)
        votes.scatter_add_(1, y[idx], 1.0 + 1e-3 * top)
        correct += int((votes.argmax(1) == y[start:start + 1024]).sum())
    return correct / n


# -- features -----------------------------------------------------------------------------------
def text_features(model_dir: Path, texts: list[str], cache: FeatureCache | None,
                  namespace: str, device: str = "cpu") -> tuple[torch.Tensor, dict]:
    """(features, stats) of a text base model: exactly what a default `head` job computes (its
    tokenisation, pooling and cache keys under the same namespace), so that job starts warm."""
    hp = resolve_hyperparameters("head", {})
    if cache is not None and (hit := _cached_text_features(model_dir, texts, cache, namespace,
                                                           hp["max_length"])) is not None:
        return hit
    cfg = TrainConfig(method="head", hyperparameters=hp, device=device, labels=["_"])
    task = TextTask(model_dir, feature_cache=cache, feature_namespace=namespace)
    # the one "validation" example is the first training one: nothing extra is computed
    task.prepare(cfg, D.Examples(list(texts), [0] * len(texts)), D.Examples(texts[:1], [0]))
    return task.train_features(), {**(task.feature_stats or {}), "examples": len(texts)}


@lru_cache(maxsize=8)
def _tokenizer(model_dir: str):
    """Tokenizers stay loaded in a worker: a ranking on cached features only tokenises."""
    return modeling.load_tokenizer(model_dir)


def _cached_text_features(model_dir: Path, texts: list[str], cache: FeatureCache,
                          namespace: str, max_length: int) -> tuple[torch.Tensor, dict] | None:
    """Every text's features from the cache (only the tokenizer runs), else None."""
    t0 = time.perf_counter()
    ids = D.encode(_tokenizer(str(model_dir)), texts, [0] * len(texts), max_length)
    keys = [example_key(x) for x in ids.input_ids]
    table = cache.load(namespace)
    if not keys or not all(k in table for k in keys):
        return None
    return torch.stack([table[k] for k in keys]), {
        "examples": len(keys), "computed": 0, "seconds": round(time.perf_counter() - t0, 3)}


def _image_key(data: bytes, image_size: int) -> str:
    return hashlib.sha256(data + image_size.to_bytes(4, "little")).hexdigest()[:32]


@torch.no_grad()
def image_features(architecture: str, weights: Path | None, images_zip: Path,
                   members: list[str], cache: FeatureCache | None, namespace: str,
                   image_size: int = 224, batch_size: int = 32,
                   device: str = "cpu") -> tuple[torch.Tensor, dict]:
    """(features, stats) of an image base model: its pooled penultimate features on each image
    preprocessed as for evaluation (the model's own normalisation), cached per image content."""
    t0 = time.perf_counter()
    with zipfile.ZipFile(images_zip) as zf:
        blobs = [zf.read(m) for m in members]
    keys = [_image_key(b, image_size) for b in blobs]
    cached = cache.load(namespace) if cache else {}
    todo = [i for i, k in enumerate(keys) if k not in cached]
    computed: dict[str, torch.Tensor] = {}
    if todo:
        net = vision.feature_extractor(architecture, vision.load_weights(weights)
                                       if weights else None).to(device)
        tf = vision.preprocess_for(architecture, image_size).eval_transform()
        for b in range(0, len(todo), batch_size):
            idx = todo[b:b + batch_size]
            pixels = torch.stack([tf(vision.decode_image(blobs[i])) for i in idx]).to(device)
            computed.update(zip((keys[i] for i in idx), net(pixels).float().cpu(), strict=True))
        if cache:
            cache.store(namespace, {**cached, **computed})
    table = {**cached, **computed}
    stats = {"examples": len(keys), "computed": len(computed),
             "seconds": round(time.perf_counter() - t0, 3)}
    return torch.stack([table[k] for k in keys]), stats
