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

``AsyncSearch`` is the loop both papers run with several evaluations in flight
(``nasedu.parallel``): whenever a result arrives, the model is updated and the next
proposals are submitted until ``in_flight`` trials are running again. NASBOT's
asynchronous mode keeps one trial per worker; Auto-Keras (§4.3) keeps one more, so
that the next model is generated on the CPU while the current ones train.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.stats import norm

from nasedu.evaluate import Outcome
from nasedu.parallel import AsyncEvaluator, is_failed
from nasedu.search import Clock, HistoryRecord, Search


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

    def fit(
        self, K: np.ndarray, y: Sequence[float], mean: float | None = None
    ) -> GaussianProcess:
        """Condition on observations ``y`` with train kernel ``K`` (n, n).

        ``mean``: the constant prior mean; None uses the mean of ``y``. Pass the first
        fit's mean when adding hallucinated observations (``hallucinate``), so that
        they leave the posterior mean unchanged.
        """
        K = np.asarray(K, dtype=float)
        y = np.asarray(y, dtype=float)
        if K.shape != (len(y), len(y)):
            raise ValueError(f"K has shape {K.shape}, expected {(len(y), len(y))}")
        self.mean = float(y.mean()) if mean is None else float(mean)
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


def hallucinate(
    gp: GaussianProcess,
    K_all: np.ndarray,
    y: Sequence[float],
    K_pending_train: np.ndarray,
    k_pending_diag: Sequence[float],
) -> GaussianProcess:
    """The GP conditioned on the observations *and* on the evaluations still running,
    each "observed" at its posterior mean (hallucinated observations; NASBOT's code
    option ``handle_parallel='halluc'``; chapter *NASBOT*, "Asynchronous workers").

    The posterior mean stays the same everywhere (an observation equal to the
    prediction changes nothing), while σ shrinks near the pending networks, so the
    acquisition stops proposing what a worker is already training.

    Args:
        gp: the GP fitted on the ``n`` observations ``y``.
        K_all: ((n + p), (n + p)) kernel of the observed then the ``p`` pending points.
        y: the ``n`` observations.
        K_pending_train: (p, n) kernel between pending and observed points.
        k_pending_diag: (p,) kernel of each pending point with itself.
    """
    believed, _ = gp.predict(K_pending_train, k_pending_diag)  # (p,)
    return GaussianProcess(gp.noise).fit(
        K_all, np.concatenate([np.asarray(y, dtype=float), believed]), mean=gp.mean
    )


class AsyncSearch(Search):
    """A model-based search with ``in_flight`` evaluations running at once.

    One ``step`` first fills the free slots — ``propose`` (which may use the trials
    still pending) and submit — then takes *one* finished result, updates the model
    (``observe``) and returns its record. Records arrive in order of completion; each
    keeps the ``step`` it was submitted as, which seeds its training, so a trial
    scores the same whichever worker ran it. With a ``SerialEvaluator``, or a pool of
    one worker, results arrive in submission order and the search is deterministic;
    with several workers the order depends on timing, and so do the proposals (as in
    the papers' asynchronous runs).

    The state holds the pending trials; a resumed search submits them again before
    anything else (``nasedu.parallel``), so it continues exactly where it stopped.

    Subclasses implement ``make_evaluator``, ``can_propose``, ``propose`` (a JSON-ready
    trial dict with ``architecture`` and ``extra``, tensors allowed), ``candidate``
    (the object the evaluation function receives) and ``observe``, plus
    ``model_state``/``load_model_state``.
    """

    def __init__(self, budget: int, in_flight: int):
        if budget < 1 or in_flight < 1:
            raise ValueError(
                f"budget and in_flight must be >= 1, got {budget}, {in_flight}"
            )
        self.budget, self.in_flight = budget, in_flight
        self.submitted = 0  # trials submitted so far (the next trial's step)
        self.observed = 0  # results received so far
        self.pending: list[dict[str, Any]] = []
        self.pool: AsyncEvaluator | None = None

    @abc.abstractmethod
    def make_evaluator(self) -> AsyncEvaluator:
        """The evaluator (serial or a pool) that scores ``candidate(trial)``."""

    @abc.abstractmethod
    def can_propose(self) -> bool:
        """Whether a proposal can be made now (e.g. the model needs one result)."""

    @abc.abstractmethod
    def propose(self, step: int) -> dict[str, Any]:
        """The next trial, given the observations and ``self.pending``."""

    @abc.abstractmethod
    def candidate(self, trial: dict[str, Any]) -> Any:
        """What the evaluation function receives for ``trial``."""

    @abc.abstractmethod
    def observe(self, trial: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        """Add a result to the model; returns the ``extra`` to record."""

    def step(self, clock: Clock) -> list[HistoryRecord]:
        if self.pool is None:
            self.pool = self.make_evaluator()
            for trial in self.pending:  # a resumed search: the trials cut off
                self.pool.submit(self.candidate(trial), trial["step"])
        while (
            len(self.pending) < self.in_flight
            and self.submitted < self.budget
            and self.can_propose()
        ):
            start = clock.elapsed()
            trial = {**self.propose(self.submitted), "step": self.submitted}
            # when and how long the model was searched for (Auto-Keras §4.3 overlaps
            # this with training; the chapters draw both on one time axis)
            trial["extra"] = {
                **trial["extra"],
                "proposed_at": start,
                "propose_seconds": clock.elapsed() - start,
            }
            self.pending.append(trial)
            self.pool.submit(self.candidate(trial), self.submitted)
            self.submitted += 1
        if not self.pending:
            raise ValueError(
                f"{type(self).__name__}: nothing is being evaluated and nothing can "
                f"be proposed: every result so far failed (see the history's errors)"
            )
        handle, outcome = next(iter(self.pool.results()))
        trial = next(t for t in self.pending if t["step"] == handle.step)
        self.pending.remove(trial)
        extra = self.observe(trial, outcome)
        if is_failed(outcome):
            extra.pop("traceback", None)
        self.observed += 1
        if self.done():
            self.close()
        return [
            HistoryRecord(
                step=trial["step"],
                architecture=trial["architecture"],
                reward=float(outcome.reward),
                cost=float(outcome.cost),
                wall_clock=clock.elapsed(),
                extra={**extra, **trial["extra"], "pending": len(self.pending)},
            )
        ]

    def done(self) -> bool:
        return self.observed >= self.budget

    def progress_total(self) -> int | None:
        return self.budget

    def close(self) -> None:
        """Stop the evaluator's workers (a finished search does it itself)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    @abc.abstractmethod
    def model_state(self) -> dict[str, Any]:
        """The model's data (observations, random state)."""

    @abc.abstractmethod
    def load_model_state(self, state: dict[str, Any]) -> None:
        """Restore ``model_state``."""

    def state_dict(self) -> dict[str, Any]:
        return {
            "submitted": self.submitted,
            "observed": self.observed,
            "pending": [dict(t) for t in self.pending],
            "model": self.model_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.submitted, self.observed = state["submitted"], state["observed"]
        self.pending = [dict(t) for t in state["pending"]]
        self.load_model_state(state["model"])
