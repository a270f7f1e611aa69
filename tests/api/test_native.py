"""The native API: /api/query, its SSE stream, stored traces and stats."""

from __future__ import annotations

import json

import pytest

from cascade_gateway.fake_upstream import Reply, Rule

GOOD = "The capital of France is Paris."
HEDGE = "I'm not sure, but it might possibly be Lyon, I think. I don't know."


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event, data) pairs of an SSE body, comments and pings left out."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
        if data is not None:
            events.append((name, json.loads(data)))
    return events


def test_query_returns_answer_model_cost_and_trace(http, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD, usage=(20, 8))))

    body = http.post("/api/query", json={"query": "Capital of France?"}).json()

    assert body["content"] == GOOD
    assert body["model_used"] == "small"
    assert body["draft_accepted"] is True and body["cascaded"] is False
    assert body["cost"] == pytest.approx((20 * 0.15 + 8 * 0.60) / 1e6, rel=1e-12)
    assert body["latency_ms"] > 0
    assert body["trace"]["quality_score"] >= body["trace"]["quality_threshold"]


def test_force_direct_asks_the_strongest_model_only(http, upstream):
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))

    body = http.post("/api/query", json={"query": "Capital?", "force_direct": True}).json()

    assert body["model_used"] == "large"
    assert [r.model for r in upstream.requests] == ["strong-model"]


def test_query_with_unknown_field_is_a_400(http):
    response = http.post("/api/query", json={"query": "hi", "bogus": 1})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "bogus"


def test_query_stream_shows_draft_decision_then_escalated_tokens(http, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=HEDGE)))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))

    response = http.get("/api/query/stream", params={"query": "Capital of France?"})
    events = sse_events(response.text)

    names = [name for name, _ in events]
    assert names[0] == "draft"
    assert names.index("decision") < names.index("token") < names.index("done")
    decision = dict(events)["decision"]
    assert decision["accepted"] is False and decision["reason"]
    assert "".join(d["text"] for n, d in events if n == "draft") == HEDGE
    assert "".join(d["text"] for n, d in events if n == "token") == GOOD
    done = events[-1][1]
    assert done["content"] == GOOD and done["outcome"] == "escalated"


def test_query_stream_of_an_accepted_draft_has_no_token_events(http, upstream):
    upstream.add(Rule(model="draft-model", reply=Reply(text=GOOD)))

    events = sse_events(http.get("/api/query/stream", params={"query": "Capital?"}).text)

    names = [name for name, _ in events]
    assert "token" not in names
    assert names[-1] == "done" and events[-1][1]["content"] == GOOD


def test_unknown_request_id_is_a_404(http):
    response = http.get("/api/requests/does-not-exist")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_stats_count_outcomes_cost_and_acceptance(http, upstream):
    before = http.get("/api/stats").json()
    upstream.add(Rule(model="draft-model", prompt_contains="easy", reply=Reply(text=GOOD)))
    upstream.add(Rule(model="draft-model", prompt_contains="hard", reply=Reply(text=HEDGE)))
    upstream.add(Rule(model="strong-model", reply=Reply(text=GOOD)))
    http.post("/api/query", json={"query": "easy one"})
    http.post("/api/query", json={"query": "hard one"})

    after = http.get("/api/stats").json()

    assert after["requests"] - before["requests"] == 2
    assert after["drafts_accepted"] - before["drafts_accepted"] == 1
    assert after["drafts_validated"] - before["drafts_validated"] == 2
    assert after["cost_usd"] > before["cost_usd"]
    assert after["models"]["large"]["calls"] >= 1
