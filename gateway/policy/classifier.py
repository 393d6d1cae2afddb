"""The learned jailbreak / prompt-injection classifier: a small head (logistic, or one hidden
ReLU layer, whichever the training's cross-validation chose) on the request embedding
(all-MiniLM-L6-v2, the vector the request path computes once per request) and the pattern
scorer's per-category scores.

It embeds nothing: it reads the embedding it is given. The weights are a small ``.npz``
(``jailbreak_classifier.npz`` in this package, ~100 KB; trained by
``python -m gateway.policy.training``, data card in docs/policy.md); an operator points
``policy.jailbreak_classifier`` at a file of their own with the same layout.

A score explains itself: the probability, the threshold, and the pattern categories that fed
it (the engine adds the nearest known attack phrase when the similarity corpus is embedded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from gateway.policy.jailbreak import JailbreakScore, RuleMatch
from gateway.policy.vectors import as_rows

_PACKAGED = "jailbreak_classifier.npz"
CLASSIFIER_RULE = "classifier"


def pattern_features(score: JailbreakScore, categories: tuple[str, ...]) -> np.ndarray:
    """Per category, the noisy-OR of its matched rules' weights; then the overall score."""
    remaining = dict.fromkeys(categories, 1.0)
    for match in score.matches:
        if match.category in remaining:
            remaining[match.category] *= 1.0 - min(max(match.weight, 0.0), 1.0)
    rules_only = [m for m in score.matches if m.category in remaining]
    total = 1.0
    for match in rules_only:
        total *= 1.0 - min(max(match.weight, 0.0), 1.0)
    values = [1.0 - remaining[c] for c in categories] + [1.0 - total]
    return np.asarray(values, dtype=np.float32)


# The classifier judges a text of at least this many words; shorter ones are the patterns'
# alone. One to three words ("sent", "yes please", "ok ana@example.org") carry no instruction
# that overrides a model, and the classifier, trained on prompts of sentences, scored such
# texts up to 0.95; no attack in llm-warden's test split is under 6 words.
MIN_WORDS = 4


def reads(text: str) -> bool:
    """Whether the classifier may judge `text` (see `MIN_WORDS`)."""
    return len(text.split(maxsplit=MIN_WORDS)) >= MIN_WORDS


@dataclass(frozen=True)
class JailbreakClassifier:
    """``sigmoid(relu(...relu(x W_1 + b_1)...) w + b)`` over ``x = ([embedding,
    pattern_features] - mean) / scale``; no hidden layer is logistic regression.
    ``threshold`` is the operating point chosen at training (docs/policy.md); a profile may
    set its own."""

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    categories: tuple[str, ...]
    threshold: float
    card: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    @property
    def dim(self) -> int:
        """The embedding width the classifier expects."""
        return int(self.mean.shape[0]) - len(self.categories) - 1

    def features(self, embedding: np.ndarray, patterns: JailbreakScore) -> np.ndarray:
        """The feature row of one prompt (its first embedding row if it has several)."""
        vector = as_rows(embedding)[0]
        if vector.shape[0] != self.dim:
            raise ValueError(f"embedding width {vector.shape[0]}, classifier expects {self.dim}")
        return np.concatenate([vector, pattern_features(patterns, self.categories)])

    def probability(self, embedding: np.ndarray, patterns: JailbreakScore) -> float:
        """P(jailbreak or injection) for one prompt."""
        return float(self.probabilities(self.features(embedding, patterns)[None, :])[0])

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(attack) for a matrix of feature rows."""
        h = (np.asarray(features, dtype=np.float32) - self.mean) / self.scale
        for w, b in self.hidden:
            h = np.maximum(h @ w + b, 0.0)
        z = h @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))

    def match(
        self, embedding: np.ndarray, patterns: JailbreakScore, threshold: float | None = None
    ) -> RuleMatch:
        """The classifier's verdict as a `RuleMatch` whose weight is the probability."""
        p = self.probability(embedding, patterns)
        cut = self.threshold if threshold is None else threshold
        fed = sorted({m.category for m in patterns.matches if m.category in self.categories})
        cues = f"; pattern cues: {', '.join(fed)}" if fed else "; no pattern cue"
        return RuleMatch(
            id=CLASSIFIER_RULE,
            category="classifier",
            weight=p,
            explanation=f"learned classifier p={p:.3f} (threshold {cut:.2f}){cues}",
        )

    def save(self, path: str | Path) -> None:
        """Write the weights file (the layout `load` reads)."""
        arrays: dict[str, Any] = {
            "hidden_layers": np.int32(len(self.hidden)),
            "weights": self.weights.astype(np.float32),
            "bias": np.float32(self.bias),
            "mean": self.mean.astype(np.float32),
            "scale": self.scale.astype(np.float32),
            "categories": np.array(self.categories),
            "threshold": np.float32(self.threshold),
            "card": np.array(json.dumps(self.card, sort_keys=True)),
        }
        for i, (w, b) in enumerate(self.hidden):
            arrays[f"hidden_w{i}"] = w.astype(np.float32)
            arrays[f"hidden_b{i}"] = b.astype(np.float32)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | Path | None = None) -> JailbreakClassifier:
        """A weights file (default: the packaged one). Raises ValueError when it is not one."""
        if path is None:
            with resources.as_file(resources.files("gateway.policy").joinpath(_PACKAGED)) as p:
                return cls._read(p)
        return cls._read(Path(path))

    @classmethod
    def _read(cls, path: Path) -> JailbreakClassifier:
        try:
            with np.load(path, allow_pickle=False) as data:
                weights = data["weights"].astype(np.float32)
                categories = tuple(str(c) for c in data["categories"])
                mean = data["mean"].astype(np.float32)
                scale = data["scale"].astype(np.float32)
                count = int(data["hidden_layers"]) if "hidden_layers" in data else 0
                hidden = tuple(
                    (
                        data[f"hidden_w{i}"].astype(np.float32),
                        data[f"hidden_b{i}"].astype(np.float32),
                    )
                    for i in range(count)
                )
                width = mean.shape[0]
                for w, b in hidden:
                    if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                        raise ValueError("hidden layer shapes do not chain")
                    width = w.shape[1]
                if mean.shape != scale.shape or weights.shape != (width,):
                    raise ValueError("weights, mean and scale do not fit together")
                return cls(
                    hidden=hidden,
                    weights=weights,
                    bias=float(data["bias"]),
                    mean=mean,
                    scale=scale,
                    categories=categories,
                    threshold=float(data["threshold"]),
                    card=json.loads(str(data["card"])) if "card" in data else {},
                )
        except (KeyError, OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a jailbreak classifier weights file: {exc}") from exc
