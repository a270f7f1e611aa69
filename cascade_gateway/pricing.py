"""Prices per model: from the config file, else litellm's model cost map.

The cost map is a JSON file inside litellm's wheel; we read it directly so pricing never imports
litellm (seconds of start-up and hundreds of MB) and never touches the network.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

COST_MAP_FILE = "model_prices_and_context_window_backup.json"
PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """Dollars per million tokens, and the limits the cost map knows of (None: unknown)."""

    input_per_mtok: float
    output_per_mtok: float
    max_output_tokens: int | None = None
    context_window: int | None = None

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Dollars for a call of that size."""
        return (
            input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok
        ) / PER_MTOK


@cache
def _cost_map() -> dict[str, dict[str, Any]]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / COST_MAP_FILE
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def lookup(model: str, provider_kind: str | None = None) -> Price | None:
    """litellm's price for `model` (tried as given, then without a `provider/` prefix)."""
    table = _cost_map()
    candidates = [model]
    if "/" in model:
        candidates.append(model.split("/", 1)[1])
    elif provider_kind and provider_kind != "openai":
        candidates.insert(0, f"{provider_kind}/{model}")
    for name in candidates:
        entry = table.get(name)
        if entry and entry.get("input_cost_per_token") is not None:
            return Price(
                input_per_mtok=entry["input_cost_per_token"] * PER_MTOK,
                output_per_mtok=(entry.get("output_cost_per_token") or 0.0) * PER_MTOK,
                max_output_tokens=entry.get("max_output_tokens"),
                context_window=entry.get("max_input_tokens"),
            )
    return None
