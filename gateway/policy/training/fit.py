"""Logistic regression by Newton's method (IRLS), in numpy: deterministic given its inputs
(no random initialisation, no mini-batches), so the same data gives the same weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogisticFit:
    """Weights over standardised features: ``p = sigmoid(((x - mean) / scale) @ w + b)``."""

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    iterations: int

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(positive) per row."""
        z = ((features - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    l2: float = 1.0,
    balanced: bool = True,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> LogisticFit:
    """Minimise the (class-balanced, when `balanced`) log loss plus ``l2/2 * |w|^2`` (the
    bias is not penalised). Features are standardised first; float64 throughout."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features {x.shape} and labels {y.shape} do not fit")
    if not 0 < y.sum() < len(y):
        raise ValueError("both classes are needed")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    if balanced:
        positives = y.sum()
        sample = np.where(y == 1, len(y) / (2 * positives), len(y) / (2 * (len(y) - positives)))
    else:
        sample = np.ones(len(y))
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0
    theta = np.zeros(z.shape[1])
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ theta, -40.0, 40.0)))
        gradient = z.T @ (sample * (p - y)) + penalty * theta
        hessian = (z * (sample * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if float(np.abs(step).max()) < tol:
            break
    return LogisticFit(
        weights=theta[:-1].astype(np.float32),
        bias=float(theta[-1]),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        iterations=iterations,
    )


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate over the negatives is at most
    `max_fpr` (ties broken upward, so the rate holds)."""
    negatives = np.sort(np.asarray(scores)[np.asarray(labels) == 0])[::-1]
    allowed = int(np.floor(max_fpr * len(negatives)))
    if allowed >= len(negatives):
        return 0.0
    return float(np.nextafter(negatives[allowed], np.inf))


@dataclass(frozen=True)
class MlpFit:
    """One hidden ReLU layer over standardised features:
    ``p = sigmoid(relu(((x - mean) / scale) @ w1 + b1) @ w2 + b2)``."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float
    mean: np.ndarray
    scale: np.ndarray

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(positive) per row."""
        h = np.maximum(((features - self.mean) / self.scale) @ self.w1 + self.b1, 0.0)
        z = h @ self.w2 + self.b2
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def fit_mlp(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    hidden: int = 64,
    l2: float = 1e-3,
    epochs: int = 300,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> MlpFit:
    """Full-batch Adam on the class-balanced log loss plus ``l2/2 * |W|^2``; the initial
    weights come from `seed`, and there is no other randomness, so the same inputs and seed
    give the same weights."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if not 0 < y.sum() < len(y):
        raise ValueError("both classes are needed")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    z = (x - mean) / scale
    positives = y.sum()
    sample = np.where(y == 1, 1 / (2 * positives), 1 / (2 * (len(y) - positives)))
    rng = np.random.default_rng(seed)
    params = [
        rng.normal(0.0, np.sqrt(2.0 / z.shape[1]), (z.shape[1], hidden)),
        np.zeros(hidden),
        rng.normal(0.0, np.sqrt(1.0 / hidden), hidden),
        np.zeros(1),
    ]
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    beta1, beta2 = 0.9, 0.999
    for step in range(1, epochs + 1):
        w1, b1, w2, b2 = params
        pre = z @ w1 + b1
        h = np.maximum(pre, 0.0)
        p = 1.0 / (1.0 + np.exp(-np.clip(h @ w2 + b2[0], -40.0, 40.0)))
        dz = sample * (p - y)
        grads = [
            z.T @ (np.outer(dz, w2) * (pre > 0)) + l2 * w1,
            (np.outer(dz, w2) * (pre > 0)).sum(axis=0),
            h.T @ dz + l2 * w2,
            np.array([dz.sum()]),
        ]
        for i, g in enumerate(grads):
            moments[i] = beta1 * moments[i] + (1 - beta1) * g
            squares[i] = beta2 * squares[i] + (1 - beta2) * g * g
            corrected = moments[i] / (1 - beta1**step)
            params[i] = params[i] - learning_rate * corrected / (
                np.sqrt(squares[i] / (1 - beta2**step)) + 1e-8
            )
    w1, b1, w2, b2 = params
    return MlpFit(
        w1=w1.astype(np.float32),
        b1=b1.astype(np.float32),
        w2=w2.astype(np.float32),
        b2=float(b2[0]),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
    )
