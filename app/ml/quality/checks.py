"""The checks themselves, on plain values: duplicate groups and pairs, class balance,
distributions, and label issues (cleanlab on out-of-fold probabilities)."""
import re
import unicodedata
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

BLOCK = 1024  # rows of the similarity matrix computed at once (BLOCK × n floats)
SHINGLE = 5   # characters per shingle of the MinHash near-duplicate check
# Texts shorter than this are left to the other checks: "review 1" and "review 12" share 4 of
# their 5 shingles, yet one character is all they have to tell them apart.
MIN_SHINGLED_CHARS = 20
PERMUTATIONS = 128
_PUNCT = re.compile(r"[^\w\s]")


def normalize_text(text: str) -> str:
    """The text with case, Unicode forms, punctuation and spacing folded: two texts that differ
    only in those are near-duplicates."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub(" ", folded).split())


def same_key_groups(keys: Sequence[Hashable]) -> list[list[int]]:
    """Groups (of two or more indices) of equal keys, in order of first appearance."""
    by_key: dict[Hashable, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        by_key[key].append(i)
    return [g for g in by_key.values() if len(g) > 1]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def similar_pairs(a: np.ndarray, b: np.ndarray | None = None, *,
                  threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, cosine) for every pair with cosine ≥ threshold: within `a` (i < j) when b is None,
    else between a row i of `a` and a row j of `b`. Memory: BLOCK × len(b) floats at a time."""
    a = _unit(np.asarray(a, dtype=np.float32))
    other = a if b is None else _unit(np.asarray(b, dtype=np.float32))
    pairs = []
    for start in range(0, len(a), BLOCK):
        sims = a[start:start + BLOCK] @ other.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if b is not None or c > start + r:
                pairs.append((start + r, c, float(sims[r, c])))
    return pairs


def shingles(text: str) -> set[bytes]:
    """The text's character 5-grams (the whole text when shorter)."""
    data = text.encode()
    if len(text) <= SHINGLE:
        return {data}
    return {text[i:i + SHINGLE].encode() for i in range(len(text) - SHINGLE + 1)}


def minhash_pairs(a: Sequence[str], b: Sequence[str] | None = None, *,
                  threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, Jaccard) for pairs of texts whose character 5-gram sets overlap by ≥ threshold
    (Jaccard): candidates from MinHash LSH (datasketch, set at a lower threshold so that few
    pairs escape it), each checked on the exact sets. Within `a` (i < j) when b is None. Texts
    shorter than MIN_SHINGLED_CHARS take no part."""
    long_a = [i for i, t in enumerate(a) if len(t) >= MIN_SHINGLED_CHARS]
    long_b = long_a if b is None else [j for j, t in enumerate(b) if len(t) >= MIN_SHINGLED_CHARS]
    sets_a = {i: shingles(a[i]) for i in long_a}
    sets_b = sets_a if b is None else {j: shingles(b[j]) for j in long_b}
    lsh = MinHashLSH(threshold=max(threshold - 0.15, 0.1), num_perm=PERMUTATIONS)
    hashes_a = MinHash.bulk([list(sets_a[i]) for i in long_a], num_perm=PERMUTATIONS)
    for i, h in zip(long_a, hashes_a, strict=True):
        lsh.insert(i, h)
    hashes_b = hashes_a if b is None else MinHash.bulk([list(sets_b[j]) for j in long_b],
                                                       num_perm=PERMUTATIONS)
    pairs = []
    for j, h in zip(long_b, hashes_b, strict=True):
        for i in lsh.query(h):
            if b is None and i >= j:
                continue
            jaccard = len(sets_a[i] & sets_b[j]) / len(sets_a[i] | sets_b[j])
            if jaccard >= threshold:
                pairs.append((i, j, round(jaccard, 4)))
    return pairs


def components(n: int, edges: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Connected groups (of two or more) of n nodes joined by edges."""
    if not edges:
        return []
    i, j = np.array([e[0] for e in edges]), np.array([e[1] for e in edges])
    graph = coo_matrix((np.ones(len(edges)), (i, j)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = defaultdict(list)
    for node, comp in enumerate(label.tolist()):
        groups[comp].append(node)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def distribution(values: Sequence[float]) -> dict:
    """min, mean, percentiles and max of the values (all None when there are none)."""
    if len(values) == 0:
        return dict.fromkeys(("min", "mean", "p50", "p90", "p99", "max"))
    v = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(v, [50, 90, 99]).tolist()
    return {"min": float(v.min()), "mean": round(float(v.mean()), 2), "p50": p50, "p90": p90,
            "p99": p99, "max": float(v.max())}


def class_balance(counts: dict[str, int]) -> dict:
    """Majority and minority classes, their ratio, and the normalised entropy (1 = balanced)."""
    nonzero = {k: v for k, v in counts.items() if v > 0}
    majority = max(nonzero, key=nonzero.get)
    minority = min(nonzero, key=nonzero.get)
    p = np.array(list(nonzero.values()), dtype=np.float64) / sum(nonzero.values())
    entropy = float(-(p * np.log(p)).sum() / np.log(len(p))) if len(p) > 1 else 0.0
    return {"counts": dict(counts), "majority": majority, "minority": minority,
            "imbalance_ratio": round(nonzero[majority] / nonzero[minority], 3),
            "normalized_entropy": round(entropy, 4)}


@dataclass(frozen=True)
class LabelIssues:
    rows: list[int]          # indices into the examined rows, most likely wrong first
    suggested: list[int]     # the class the out-of-fold model gives each of them
    quality: list[float]     # cleanlab's label quality score (self-confidence), low = suspect
    examined: int            # rows the check covered (classes with < 2 rows are left out)
    folds: int


def label_issues(features: np.ndarray, labels: Sequence[int], *, folds: int = 5,
                 seed: int = 0) -> LabelIssues | None:
    """Likely label errors: cleanlab's find_label_issues on out-of-fold probabilities of a
    logistic regression on the features (stratified k-fold). None when too little data: fewer
    than 2 classes with 2+ rows each, or fewer than 10 such rows."""
    # deferred: cleanlab pulls in pandas and more; only the quality worker needs it
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores  # deferred: as above

    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    kept = classes[counts >= 2]
    rows = np.flatnonzero(np.isin(y, kept))
    if len(kept) < 2 or len(rows) < 10:
        return None
    yy = np.searchsorted(kept, y[rows])
    k = int(min(folds, counts[counts >= 2].min()))
    # Strong regularisation (C=0.01 on standardised features): a model that fits the noisy
    # labels less gives out-of-fold probabilities that disagree with the wrong ones (measured in
    # benchmarks/data_quality.py: more flipped labels found, fewer false flags than C 0.1 or 1).
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.01))
    probs = cross_val_predict(model, features[rows], yy, method="predict_proba",
                              cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    # n_jobs=1: by default cleanlab forks a process pool (one per physical core) from this one,
    # which holds torch's OpenMP threads and the worker's own; a child that inherits a lock held
    # by one of them at the fork waits forever, and so does the worker. Its work is per class,
    # milliseconds on a dataset this size.
    found = find_label_issues(yy, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(yy, probs)
    return LabelIssues(rows=rows[found].tolist(), suggested=kept[probs[found].argmax(1)].tolist(),
                       quality=[round(float(q), 4) for q in quality[found]],
                       examined=len(rows), folds=k)
