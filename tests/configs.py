"""Config builders, and a tool definition, shared by the tests."""

from __future__ import annotations

from typing import Any

# (input, output) dollars per million tokens, as in config/example.yaml plus a middle tier.
PRICES = {
    "small": (0.15, 0.60),
    "medium": (1.00, 4.00),
    "large": (2.50, 10.00),
}
UPSTREAM_NAMES = {"small": "draft-model", "medium": "medium-model", "large": "strong-model"}

# A function tool with a required argument, as a request offers it.
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def config_dict(base_url: str = "http://127.0.0.1:9/v1", **cascades: Any) -> dict[str, Any]:
    """A config with three priced models on one provider and the given cascades."""
    return {
        "providers": {"local": {"kind": "openai", "base_url": base_url, "api_key_env": "NOPE"}},
        "models": {
            alias: {
                "provider": "local",
                "model": UPSTREAM_NAMES[alias],
                "input_per_mtok": price[0],
                "output_per_mtok": price[1],
            }
            for alias, price in PRICES.items()
        },
        "storage": {"database_url": "sqlite://"},
        "cascades": cascades
        or {
            "default": {"tiers": ["small", "large"]},
            "three": {"tiers": ["small", "medium", "large"]},
        },
    }
