"""How a streamed answer is cut into writes: what is ready together goes out together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import orjson

from cascade_gateway.api import protocol, serving, sse
from cascade_gateway.budget.meter import UNMETERED
from cascade_gateway.config import GatewayConfig
from cascade_gateway.domain import ChatRequest, Delta, merge_deltas
from cascade_gateway.providers.scripted import ScriptedProvider
from tests.conftest import Recorder, engine_for


class OneRead(ScriptedProvider):
    """Streams each answer as an upstream whose whole answer, end marker included, came in
    one network read: one delta that `ends_stream`, then the closing one."""

    async def stream(self, model: str, request: ChatRequest) -> AsyncIterator[Delta]:
        *pieces, closing = [delta async for delta in super().stream(model, request)]
        yield replace(merge_deltas(pieces), ends_stream=True)
        yield closing


async def opened(provider: ScriptedProvider, config: GatewayConfig) -> sse.EventStream:
    """The response to a streamed request for the `small` alias (pass-through), as opened."""
    engine = engine_for(config, provider, Recorder())
    run = serving.Run(engine, engine.resolve("small"), "req-1", UNMETERED, None)
    body = {"model": "small", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    chat = protocol.parse_request(orjson.dumps(body))
    return await serving.stream(run, chat, chat.to_domain())


async def test_an_answer_that_came_with_the_upstreams_end_goes_out_whole_in_one_write(config):
    provider = OneRead("local")
    provider.enqueue("draft-model", "Paris is the capital.")

    response = await opened(provider, config)

    assert isinstance(response.first, sse.Last)  # the whole stream, sent with the end
    assert b"Paris is the capital." in response.first
    assert response.first.endswith(sse.DONE)


async def test_text_still_arriving_goes_out_as_it_comes(config):
    provider = ScriptedProvider("local")  # a piece per word, none of them the upstream's end
    provider.enqueue("draft-model", "Paris is the capital.")

    response = await opened(provider, config)

    assert not isinstance(response.first, sse.Last)
    assert b"Paris" in response.first and sse.DONE not in response.first
