"""A wire-accurate fake of the OpenAI and Anthropic APIs, scripted like a story.

The official SDKs cannot tell it from the real thing, so tests, benchmarks and the demo drive the
gateway's real adapters against it over a real socket.

Example:
    with FakeUpstream.running() as up:
        up.add(Rule(model="draft", reply=Reply(text="Paris.")))
        up.add(Rule(model="draft", times=1, fault=Fault(status=429, retry_after=2)))
        client = openai.OpenAI(base_url=up.url + "/v1", api_key="k")

Modules: `script` (rules, replies, faults, matching, history), `answer` (the protocol-neutral
answer), `openai_wire` / `anthropic_wire` (each API's JSON), `app` (API routes), `control` (the
`/_fake` control plane), `server` (runners).
"""

from cascade_gateway.fake_upstream.app import build_app
from cascade_gateway.fake_upstream.script import (
    Fault,
    ReceivedRequest,
    Reply,
    Rule,
    Script,
    load_script,
)
from cascade_gateway.fake_upstream.server import FakeUpstream, serve

__all__ = [
    "FakeUpstream",
    "Fault",
    "ReceivedRequest",
    "Reply",
    "Rule",
    "Script",
    "build_app",
    "load_script",
    "serve",
]
