"""Train the `learned` validator signal: P(draft correct) from general features of the question
and the draft (cascade_gateway/validation/signals/features.py), by logistic regression.

Trains on the *train* half of a replay file only (the split is fixed by a hash of each row's
id, `cascade_gateway.replay.data.in_train`), picks the regularization by 5-fold
cross-validation inside that half, and writes the weights that the gateway scores in pure
Python at run time. The validation half is never used for a choice; its AUC is printed for
information only.

    pip install -e '.[dev]'       # scikit-learn and numpy: training only, never at run time
    python benchmarks/train_scorer.py [--data FILE] [--draft MODEL] [--out FILE]

Data: GSM8K answers of Mixtral-8x7B-Instruct and GPT-4-1106-preview with their grades, from
the RouteLLM project's published evaluations (Apache-2.0).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from cascade_gateway.domain import ChatRequest
from cascade_gateway.replay.data import Dataset, load
from cascade_gateway.validation.signals import learned
from cascade_gateway.validation.signals.features import FEATURE_NAMES, math_features
from cascade_gateway.validation.signals.query import query_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gsm8k_cascade_dev.jsonl"
DEFAULT_OUT = Path(learned.__file__).with_name(learned.WEIGHTS_FILE)
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
FOLDS = 5
SEED = 0


def features_and_labels(
    dataset: Dataset, draft: str, good_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """One feature row per data row, computed exactly as the signal computes it at run time."""
    rows, labels = [], []
    for row in dataset.rows:
        request = ChatRequest(messages=[{"role": "user", "content": row.prompt}])
        answer = row.answers[draft]
        rows.append(math_features(query_text(request), answer.text))
        good = answer.quality >= good_score if dataset.metric == "score" else answer.quality > 0
        labels.append(1 if good else 0)
    return np.array(rows, dtype=float), np.array(labels, dtype=int)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="replay JSONL file")
    parser.add_argument("--draft", default="mixtral-8x7b-instruct", help="the draft model")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="weights JSON to write")
    parser.add_argument(
        "--good-score", type=float, default=8.0, help="with `score` grades: what counts as good"
    )
    args = parser.parse_args(argv)

    dataset = load(args.data)
    if args.draft not in dataset.models:
        print(f"error: no answers from {args.draft!r} in {args.data}", file=sys.stderr)
        return 2
    train, held_out = dataset.split("train"), dataset.split("validation")
    x, y = features_and_labels(train, args.draft, args.good_score)
    x_val, y_val = features_and_labels(held_out, args.draft, args.good_score)

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # A feature constant in training carries no weight.
    z, z_val = (x - mean) / scale, (x_val - mean) / scale

    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=SEED)
    cv_auc = {}
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=5000)
        predicted = cross_val_predict(model, z, y, cv=folds, method="predict_proba")[:, 1]
        cv_auc[c] = float(roc_auc_score(y, predicted))
    best_c = max(C_GRID, key=lambda c: (round(cv_auc[c], 3), -c))
    model = LogisticRegression(C=best_c, max_iter=5000).fit(z, y)
    held_out_auc = float(roc_auc_score(y_val, model.predict_proba(z_val)[:, 1]))

    coef = [float(c) for c in model.coef_[0]]
    weights = {
        "model": "logistic",
        "features": list(FEATURE_NAMES),
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "coef": [round(c, 6) for c in coef],
        "intercept": round(float(model.intercept_[0]), 6),
        "meta": {
            "target": "the draft's answer is correct",
            "data": Path(args.data).name,
            "data_source": "RouteLLM published evaluations (Apache-2.0)",
            "draft_model": args.draft,
            "trained_on": "train half (hash of id, cascade_gateway.replay.data.in_train)",
            "train_rows": len(y),
            "train_positive_rate": round(float(y.mean()), 4),
            "C": best_c,
            "cv_auc": {str(c): round(a, 4) for c, a in cv_auc.items()},
            "trainer": "benchmarks/train_scorer.py",
            "sklearn": sklearn.__version__,
            "date": dt.date.today().isoformat(),
        },
    }
    Path(args.out).write_text(_dumps(weights), encoding="utf-8")

    print(f"train rows {len(y)} (draft correct {y.mean():.1%}), validation rows {len(y_val)}")
    for c in C_GRID:
        print(f"  C={c:<5} {FOLDS}-fold CV AUC on train {cv_auc[c]:.3f}")
    print(
        f"chosen C={best_c}; AUC on the validation half (not used for any choice) "
        f"{held_out_auc:.3f}"
    )
    for name, c in sorted(zip(FEATURE_NAMES, coef, strict=True), key=lambda t: -abs(t[1])):
        print(f"  {name:24s} {c:+.3f}")
    print(f"wrote {args.out}")
    return 0


def _dumps(weights: dict[str, object]) -> str:
    """One key a line, each list on its line: small diffs when the weights are retrained."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in weights.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


if __name__ == "__main__":
    raise SystemExit(main())
