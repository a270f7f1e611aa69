"""The litellm adapter: never imported unless used, and a real call through litellm.acompletion.

litellm is driven against a tiny OpenAI-speaking HTTP server on 127.0.0.1 (`openai/<model>`
with `api_base` pointing at it), since litellm makes its own HTTP clients.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cascade_gateway.domain import ChatRequest
from cascade_gateway.errors import ProviderError
from cascade_gateway.providers.litellm import LiteLLMProvider
from cascade_gateway.providers.registry import build_provider
from tests.providers.wire import openai_chunk, openai_completion, openai_sse, openai_usage

# litellm's types trip a pydantic UserWarning when first built (harmless; warnings are errors here).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Item 'summary' on TypedDict class 'ChatCompletionReasoningItem':UserWarning"
)

HELLO = ChatRequest(messages=[{"role": "user", "content": "Say hello"}])


class OpenAIServer(ThreadingHTTPServer):
    """Answers /chat/completions with the next scripted (status, body, headers) or a default."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: OpenAIServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.received.append((headers, body))
        if self.server.answers:
            status, payload, headers = self.server.answers.pop(0)
            self._send(status, json.dumps(payload).encode(), "application/json", headers)
        elif body.get("stream"):
            stream = openai_sse(
                openai_chunk({"role": "assistant", "content": "Hel"}),
                openai_chunk({"content": "lo"}),
                openai_chunk({}, "stop"),
                openai_chunk(None, usage=openai_usage(9, 2)),
            )
            self._send(200, stream, "text/event-stream", {})
        else:
            answer = openai_completion({"content": "Hello!"}, usage=openai_usage(9, 2))
            self._send(200, json.dumps(answer).encode(), "application/json", {})

    def _send(
        self, status: int, content: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(content)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def provider(server: OpenAIServer) -> LiteLLMProvider:
    built = build_provider(
        "litellm-test",
        "litellm",
        base_url=server.api_base,
        api_key="sk-local",
        headers={"x-team": "search"},
    )
    assert isinstance(built, LiteLLMProvider)
    return built


def test_importing_and_building_other_providers_never_imports_litellm() -> None:
    script = (
        "import sys\n"
        "import cascade_gateway.providers\n"
        "import cascade_gateway.providers.litellm\n"
        "from cascade_gateway.providers.registry import build_provider\n"
        "build_provider('o', 'openai', api_key='k')\n"
        "build_provider('a', 'anthropic', api_key='k')\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr


async def test_complete_goes_through_litellm_to_an_openai_server(
    server: OpenAIServer, provider: LiteLLMProvider
) -> None:
    completion = await provider.complete("openai/local-model", HELLO)

    headers, body = server.received[-1]
    assert body["model"] == "local-model"
    assert body["messages"] == HELLO.messages
    assert headers["authorization"] == "Bearer sk-local"
    assert headers["x-team"] == "search"
    assert completion.text == "Hello!"
    assert completion.finish_reason == "stop"
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (9, 2)


async def test_request_extras_reach_the_body_but_never_the_connection(
    server: OpenAIServer, provider: LiteLLMProvider
) -> None:
    extra = {"seed": 7, "top_k": 3, "api_base": "http://attacker.test/v1", "api_key": "stolen"}
    request = ChatRequest(messages=HELLO.messages, extra=extra)

    await provider.complete("openai/local-model", request)

    # It reached this server, with this provider's key: the request's values stayed in the body.
    headers, body = server.received[-1]
    assert (body["seed"], body["top_k"]) == (7, 3)
    assert headers["authorization"] == "Bearer sk-local"


async def test_stream_goes_through_litellm_and_ends_with_finish_and_usage(
    provider: LiteLLMProvider,
) -> None:
    deltas = [delta async for delta in provider.stream("openai/local-model", HELLO)]

    assert "".join(d.text for d in deltas) == "Hello"
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None
    assert (deltas[-1].usage.input_tokens, deltas[-1].usage.output_tokens) == (9, 2)
    assert sum(d.usage is not None for d in deltas) == 1


async def test_litellm_rate_limit_maps_to_provider_error(
    server: OpenAIServer, provider: LiteLLMProvider
) -> None:
    server.answers.append((429, {"error": {"message": "Rate limit reached"}}, {"retry-after": "2"}))

    with pytest.raises(ProviderError) as raised:
        await provider.complete("openai/local-model", HELLO)

    assert raised.value.status == 429
    assert raised.value.retry_after == 2.0
