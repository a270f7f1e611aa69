"""Offline token counting, for streams whose upstream reports no usage and for estimates.

tiktoken downloads its encodings on first use; litellm's wheel ships the same files, so we point
tiktoken's cache at them (found on disk, without importing litellm). Counts are OpenAI's o200k
encoding: exact for recent OpenAI models, a close estimate for others.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascade_gateway.domain import content_text

if TYPE_CHECKING:
    import tiktoken

ENCODING = "o200k_base"
# OpenAI's documented per-message framing: <|start|>{role}\n{content}<|end|>, then a reply primer.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


def _shipped_encodings_dir() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return folder if folder.is_dir() else None


@cache
def _encoding() -> tiktoken.Encoding:
    if "TIKTOKEN_CACHE_DIR" not in os.environ and (folder := _shipped_encodings_dir()):
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


def count_text(text: str) -> int:
    """Tokens in a piece of text."""
    if not text:
        return 0
    return len(_encoding().encode(text, disallowed_special=()))


def count_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> int:
    """Prompt tokens for a chat request, framed as OpenAI frames messages."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_text(str(message.get("role", "")))
        total += count_text(content_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            total += count_text(function.get("name", "")) + count_text(
                function.get("arguments", "")
            )
    if tools:
        total += count_text(json.dumps(tools, separators=(",", ":")))
    return total


def warm_up() -> None:
    """Load the encoding now (about 0.3 s and 75 MB) rather than on the first counted request,
    so a worker's memory is flat from start-up and no request pays for the load."""
    _encoding()
