"""cascade-gateway: an OpenAI-compatible LLM gateway that drafts cheap, validates, and escalates."""

__version__ = "0.1.0"
