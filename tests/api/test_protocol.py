"""The OpenAI request body as the cascade sees it."""

from __future__ import annotations

import orjson
import pytest

from cascade_gateway.api import protocol

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "ann"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
    {"role": "assistant", "tool_calls": [{"id": "c2", "type": "function"}]},
    {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
]


@pytest.mark.parametrize("message", MESSAGES, ids=[m["role"] for m in MESSAGES])
def test_a_message_reaches_the_cascade_as_sent(message):
    body = orjson.dumps({"model": "default", "messages": [message]})

    domain = protocol.parse_request(body).to_domain()

    assert domain.messages == [message]  # nothing added (no "content": None), nothing lost


def test_a_message_converts_as_pydantics_own_dump_does():
    chat = protocol.parse_request(orjson.dumps({"model": "default", "messages": MESSAGES}))

    assert [m.to_dict() for m in chat.messages] == [
        m.model_dump(exclude_unset=True) for m in chat.messages
    ]
