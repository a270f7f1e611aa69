"""Query-side signals: complexity (a prior) and whether the answer's length fits the query."""

from __future__ import annotations

from cascade_gateway.domain import ChatRequest
from cascade_gateway.validation.signals import Complexity, LengthFit

SIMPLE = "What is the capital of France?"
MEDIUM = "Explain why the sky is blue, and compare it with sunsets."
COMPLEX = (
    "Implement a lock-free queue in C++ and prove it is linearizable. Analyze the time "
    "complexity step by step.\n```cpp\ntemplate <class T> struct Queue;\n```\n"
    "1. What are the trade-offs versus a mutex?\n2. How does it behave with 64 threads?"
)


def complexity_of(ask, answer, question: str) -> float:
    return Complexity()(ask(question), answer()).score


def test_complexity_scores_a_simple_question_near_one(ask, answer):
    assert complexity_of(ask, answer, SIMPLE) > 0.95


def test_complexity_scores_harder_questions_lower(ask, answer):
    simple, medium, hard = (complexity_of(ask, answer, q) for q in (SIMPLE, MEDIUM, COMPLEX))

    assert simple > medium > hard


def test_complexity_never_falls_below_its_floor(ask, answer):
    assert complexity_of(ask, answer, COMPLEX * 20) >= 0.2


def test_complexity_explains_its_estimate(ask, answer):
    score = Complexity()(ask("Prove it step by step."), answer())

    assert score.detail == "difficulty 0.51: prove, step by step; 5 words"


def test_complexity_counts_math_notation(ask, answer):
    assert complexity_of(ask, answer, "What is x^2 + 3 = 12?") < complexity_of(
        ask, answer, "What is the capital of Peru?"
    )


def test_complexity_reads_only_the_last_user_message(answer):
    request = ChatRequest(
        messages=[
            {"role": "system", "content": COMPLEX},
            {"role": "user", "content": COMPLEX},
            {"role": "assistant", "content": "Done."},
            {"role": "user", "content": SIMPLE},
        ]
    )

    assert Complexity()(request, answer()).score > 0.95


def test_complexity_reads_both_ends_of_a_long_message(ask, answer):
    question = "Here is a document.\n" + "Plain filler text. " * 2000 + "\nProve the claim."

    assert "prove" in Complexity()(ask(question), answer()).detail


def test_complexity_reads_text_parts_of_a_list_content(answer):
    content = [
        {"type": "text", "text": "Prove it step by step."},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    request = ChatRequest(messages=[{"role": "user", "content": content}])

    assert Complexity()(request, answer()).detail.startswith("difficulty 0.51")


def test_complexity_does_not_apply_without_a_user_message(answer):
    request = ChatRequest(messages=[{"role": "system", "content": "Be brief."}])

    assert Complexity()(request, answer()) is None


def test_length_fit_does_not_apply_to_a_single_question(ask, answer):
    assert LengthFit()(ask(SIMPLE), answer("Paris.")) is None


def test_length_fit_scores_a_terse_answer_to_many_questions_low(ask, answer):
    question = "Who wrote it? When? Where? Why? How was it received?"

    score = LengthFit()(ask(question), answer("Yes."))

    assert score.score == 0.05
    assert score.detail == "1 words for 5 parts"


def test_length_fit_scores_a_full_answer_one(ask, answer):
    text = "Ada Lovelace wrote it in 1843, in London, to explain the engine; it was widely praised."

    assert LengthFit()(ask("Who wrote it? When? Where? Why?"), answer(text)).score == 1.0


def test_length_fit_counts_list_items_as_parts(ask, answer):
    question = "Summarize:\n- the plot\n- the characters\n- the ending"

    assert LengthFit()(ask(question), answer("A boy.")).detail == "2 words for 3 parts"


def test_length_fit_ignores_question_marks_inside_urls(ask, answer):
    assert LengthFit()(ask("Open https://x.test/?a=1 and what is it?"), answer("A page.")) is None


def test_length_fit_does_not_apply_in_json_mode(ask, answer):
    request = ask("Who? When?", response_format={"type": "json_object"})

    assert LengthFit()(request, answer('{"who": "Ada"}')) is None
