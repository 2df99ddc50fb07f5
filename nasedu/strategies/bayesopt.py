"""Bayesian optimisation over architectures: a small exact Gaussian process on a given
kernel matrix (chapters *Auto-Keras* and *NASBOT*).

Both papers put a GP on architectures through a kernel built from a distance
(Auto-Keras Eq. 3, the edit distance; NASBOT, the OTMANN distance), so the GP here
never sees vectors: it takes the kernel matrices ``K`` (train × train), ``K_*``
(test × train) and the test diagonal. It follows Rasmussen & Williams, Alg. 2.1
(Cholesky factorisation; constant mean = the mean of the observations).

Acquisitions: Auto-Keras's UCB written on a *cost* (Eq. 10, α = μ − β·σ, minimised)
and NASBOT's expected improvement (on a reward, maximised). Kernel hyper-parameters
are chosen by the log marginal likelihood over a candidate set (NASBOT fits them by
marginal likelihood; a grid keeps it deterministic and small).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.stats import norm


class GaussianProcess:
    """Exact GP regression with a precomputed kernel matrix.

    Args:
        noise: observation-noise variance added to the diagonal (also keeps the
            Cholesky factorisation stable when two architectures coincide).
    """

    def __init__(self, noise: float = 1e-6):
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = noise
        self._chol: np.ndarray | None = None

    def fit(self, K: np.ndarray, y: Sequence[float]) -> GaussianProcess:
        """Condition on observations ``y`` with train kernel ``K`` (n, n)."""
        K = np.asarray(K, dtype=float)
        y = np.asarray(y, dtype=float)
        if K.shape != (len(y), len(y)):
            raise ValueError(f"K has shape {K.shape}, expected {(len(y), len(y))}")
        self.mean = float(y.mean())
        self._y = y - self.mean  # (n,)
        self._chol = cholesky(K + self.noise * np.eye(len(y)), lower=True)  # (n, n)
        self._alpha = cho_solve((self._chol, True), self._y)  # (n,)
        return self

    def predict(
        self, K_star: np.ndarray, k_star_diag: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at the test points.

        Args:
            K_star: (m, n) kernel between test and training points.
            k_star_diag: (m,) kernel of each test point with itself.
        """
        if self._chol is None:
            raise ValueError("predict before fit: call fit(K, y) first")
        K_star = np.atleast_2d(np.asarray(K_star, dtype=float))  # (m, n)
        mu = self.mean + K_star @ self._alpha  # (m,)
        v = solve_triangular(self._chol, K_star.T, lower=True)  # (n, m)
        var = np.asarray(k_star_diag, dtype=float) - (v**2).sum(axis=0)  # (m,)
        return mu, np.sqrt(np.clip(var, 0.0, None))

    def log_marginal_likelihood(self) -> float:
        """log p(y | K) (R&W Eq. 2.30) of the fitted data."""
        if self._chol is None:
            raise ValueError("log_marginal_likelihood before fit")
        n = len(self._y)
        return float(
            -0.5 * self._y @ self._alpha
            - np.log(np.diag(self._chol)).sum()
            - 0.5 * n * math.log(2 * math.pi)
        )


def ucb_cost(mean: np.ndarray, std: np.ndarray, beta: float) -> np.ndarray:
    """Auto-Keras Eq. 10: α(f) = μ(y_f) − β·σ(y_f) on a cost; lower is better."""
    return np.asarray(mean) - beta * np.asarray(std)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """EI for maximisation: E[max(f − best, 0)] under N(mean, std²) (NASBOT, ``acq='ei'``)."""
    mean, std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
    safe = np.where(std > 0, std, 1.0)
    z = (mean - best) / safe
    ei = (mean - best) * norm.cdf(z) + safe * norm.pdf(z)
    return np.where(std > 0, ei, np.maximum(mean - best, 0.0))


def fit_hyperparameters(
    kernel: Callable[[Any], np.ndarray],
    y: Sequence[float],
    candidates: Sequence[Any],
    noise: float = 1e-6,
) -> tuple[Any, GaussianProcess]:
    """The candidate whose kernel matrix ``kernel(candidate)`` maximises the log
    marginal likelihood of ``y``, and the GP fitted with it."""
    if not candidates:
        raise ValueError("no hyper-parameter candidates given")
    best: tuple[float, Any, GaussianProcess] | None = None
    for candidate in candidates:
        try:
            gp = GaussianProcess(noise).fit(kernel(candidate), y)
        except np.linalg.LinAlgError:
            continue  # a candidate whose matrix is numerically singular is skipped
        lml = gp.log_marginal_likelihood()
        if best is None or lml > best[0]:
            best = (lml, candidate, gp)
    if best is None:
        raise ValueError(
            "every hyper-parameter candidate gave a singular kernel matrix"
        )
    return best[1], best[2]
