"""The built-in signals, one module per family: answer text, structured output, the model's
confidence, and the query itself."""

from cascade_gateway.validation.signals.confidence import Logprob
from cascade_gateway.validation.signals.query import Complexity, LengthFit
from cascade_gateway.validation.signals.structured import JsonFormat, ToolCalls
from cascade_gateway.validation.signals.text import Empty, Hedging, Refusal, Truncation

__all__ = [
    "Complexity",
    "Empty",
    "Hedging",
    "JsonFormat",
    "LengthFit",
    "Logprob",
    "Refusal",
    "ToolCalls",
    "Truncation",
]
