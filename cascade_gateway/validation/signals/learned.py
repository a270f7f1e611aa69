"""A learned scorer (FrugalGPT-style): the probability that a draft is correct, from features
of the question and the answer, by a logistic regression trained offline.

The weights are a small JSON file shipped in the package (`learned_math.json`, trained by
`benchmarks/train_scorer.py` on worked answers to math word problems); scoring is a dot product
in pure Python. Opt-in (`signals: {learned: {enabled: true}}`): it was trained on one kind of
question, and says nothing useful about others.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from cascade_gateway.domain import ChatRequest, Completion
from cascade_gateway.validation.signals.features import FEATURE_NAMES, math_features
from cascade_gateway.validation.signals.query import query_text
from cascade_gateway.validation.verdict import SignalScore

WEIGHTS_FILE = "learned_math.json"
_PACKAGE = "cascade_gateway.validation.signals"


@dataclass(frozen=True, slots=True)
class LogisticModel:
    """P(correct) = sigmoid(intercept + sum(coef * (x - mean) / scale))."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticModel:
        """Read the weights file's content; refuse weights made for other features."""
        features = tuple(data["features"])
        if features != FEATURE_NAMES:
            raise ValueError(
                "learned weights were trained on other features; retrain with "
                "benchmarks/train_scorer.py"
            )
        sizes = {len(data[key]) for key in ("mean", "scale", "coef")}
        if sizes != {len(features)}:
            raise ValueError("learned weights: mean, scale and coef must match the features")
        return cls(
            features=features,
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) or 1.0 for v in data["scale"]),
            coef=tuple(float(v) for v in data["coef"]),
            intercept=float(data["intercept"]),
            meta=dict(data.get("meta", {})),
        )

    def probability(self, values: list[float]) -> float:
        z = self.intercept
        for x, mean, scale, coef in zip(values, self.mean, self.scale, self.coef, strict=True):
            z += coef * (x - mean) / scale
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


@cache
def shipped_model() -> LogisticModel:
    """The weights that ship with the package (read once)."""
    text = resources.files(_PACKAGE).joinpath(WEIGHTS_FILE).read_text(encoding="utf-8")
    return LogisticModel.from_json(json.loads(text))


@dataclass(frozen=True, slots=True)
class Learned:
    """Soft, opt-in: the trained model's probability that the draft is correct.

    Applies to text answers outside JSON mode. The detail names the feature that pulled the
    score down most, so a rejection still says why ("arith_wrong", "final_fraction", ...).
    """

    weight: float = 1.0
    name: str = field(default="learned", init=False)

    def __post_init__(self) -> None:
        # Unusable weights are a config error at start-up, not an escalation of every draft.
        try:
            shipped_model()
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"learned: cannot use its weights ({exc})") from exc

    def __call__(self, request: ChatRequest, completion: Completion) -> SignalScore | None:
        json_mode = (request.response_format or {}).get("type") in ("json_object", "json_schema")
        if json_mode or not completion.text.strip():
            return None
        model = shipped_model()
        values = math_features(query_text(request), completion.text)
        probability = model.probability(values)
        pulls = [
            (coef * (x - mean) / scale, name)
            for x, mean, scale, coef, name in zip(
                values, model.mean, model.scale, model.coef, model.features, strict=True
            )
        ]
        weakest = min(pulls)
        detail = f"p(correct)={probability:.2f}"
        if weakest[0] < 0:
            detail += f", most against: {weakest[1]}"
        return SignalScore.of_soft(self.name, probability, self.weight, detail)
