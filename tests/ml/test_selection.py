"""LogME against a brute-force maximisation of the exact evidence, for n > d and n < d; the k-NN
probe on data whose answer is known."""
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from app.ml import selection


def brute_force_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """max over (alpha, beta) of log N(y; 0, I / beta + F F^T / alpha), per example: the marginal
    likelihood of the Bayesian linear model written directly, maximised numerically."""
    n = len(y)

    def negative(log_ab):
        alpha, beta = np.exp(log_ab)
        cov = np.eye(n) / beta + f @ f.T / alpha
        return -multivariate_normal(np.zeros(n), cov, allow_singular=False).logpdf(y)

    best = min((minimize(negative, start, method="Nelder-Mead",
                         options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 4000})
                for start in ([0.0, 0.0], [2.0, -2.0], [-2.0, 2.0], [4.0, 1.0])),
               key=lambda r: r.fun)
    return -best.fun / n


@pytest.mark.parametrize("n,d", [(60, 8), (20, 50)], ids=["n>d", "n<d"])
def test_logme_equals_the_maximised_exact_evidence(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    labels = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    expected = np.mean([brute_force_evidence(f, (labels == c).astype(float)) for c in (0, 1)])
    assert selection.logme(f, labels) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_dropping_the_zero_directions_term_would_be_wrong_when_n_lt_d():
    """The reference implementation's evidence (without (d - k)/2 log alpha) is not the maximum
    of the exact evidence when n < d: the difference the docstring derives is real."""
    rng = np.random.default_rng(1)
    n, d = 15, 40
    f = rng.normal(size=(n, d))
    target = (rng.random(n) > 0.5).astype(float)
    sigma, u, _ = selection._spectrum(f)
    x2 = (u.T @ target) ** 2
    ours, alpha, _ = selection._class_evidence(sigma, x2, 0.0, n, d)
    reference_value = ours + (d - n) / 2 * np.log(alpha) / n
    exact = brute_force_evidence(f, target)
    assert ours == pytest.approx(exact, rel=1e-5)
    assert abs(reference_value - exact) > 1e-3


def test_logme_prefers_features_that_separate_the_classes():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 40)
    informative = np.eye(3)[labels] * 3 + rng.normal(size=(120, 3))
    informative = np.hstack([informative, rng.normal(size=(120, 29))])
    noise = rng.normal(size=(120, 32))
    assert selection.logme(informative, labels) > selection.logme(noise, labels)
    assert selection.knn_accuracy(informative, labels) > 0.9
    assert selection.knn_accuracy(noise, labels) < 0.6


def test_knn_leaves_each_example_out():
    # every example is its own nearest neighbour; with it left out, the two classes interleave
    features = np.array([[1.0, 0.0], [0.0, 1.0]] * 10)
    labels = np.array([0, 1] * 10)
    assert selection.knn_accuracy(features, labels, k=1) == 1.0
    swapped = np.array([1, 0] * 10)
    assert selection.knn_accuracy(features[:2], swapped[:2], k=1) == 0.0
