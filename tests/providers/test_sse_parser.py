"""Server-sent events are read by the WHATWG rules, however the bytes are cut into reads."""

from __future__ import annotations

from cascade_gateway.providers.http import SseEvent, SseParser


def events_of(*reads: bytes) -> list[SseEvent]:
    parser = SseParser()
    return [event for read in reads for event in parser.feed(read)]


def test_each_blank_line_ends_an_event():
    assert events_of(b'data: {"a": 1}\n\ndata: [DONE]\n\n') == [
        SseEvent(None, '{"a": 1}'),
        SseEvent(None, "[DONE]"),
    ]


def test_an_event_cut_across_reads_comes_out_whole_once_it_ends():
    parser = SseParser()

    assert parser.feed(b"data: hel") == []
    assert parser.feed(b"lo\n") == []
    assert parser.feed(b"\ndata: x") == [SseEvent(None, "hello")]


def test_crlf_line_ends_are_read_like_lf_even_split_between_reads():
    assert events_of(b"event: ping\r\ndata: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n") == [
        SseEvent("ping", "1"),
        SseEvent(None, "2"),
    ]


def test_data_lines_join_with_newlines_and_the_event_name_is_kept():
    assert events_of(b"event: message_delta\ndata: one\ndata:two\ndata\n\n") == [
        SseEvent("message_delta", "one\ntwo\n")
    ]


def test_comments_and_unknown_fields_are_ignored():
    assert events_of(b": ping\n\nid: 7\nretry: 10\ndata: x\n\n") == [SseEvent(None, "x")]


def test_only_one_space_after_the_colon_is_dropped():
    assert events_of(b"data:  two spaces\n\ndata:none\n\n") == [
        SseEvent(None, " two spaces"),
        SseEvent(None, "none"),
    ]


def test_extra_blank_lines_make_no_empty_events():
    assert events_of(b"\n\n\ndata: a\n\n\n\ndata: b\n\n") == [
        SseEvent(None, "a"),
        SseEvent(None, "b"),
    ]


def test_a_character_split_between_reads_is_decoded_whole():
    encoded = "data: café\n\n".encode()
    cut = encoded.index("é".encode()) + 1  # inside the two bytes of é

    assert events_of(encoded[:cut], encoded[cut:]) == [SseEvent(None, "café")]


def test_an_event_the_bytes_end_in_the_middle_of_is_not_returned():
    assert events_of(b"data: a\n\ndata: unfinished\n") == [SseEvent(None, "a")]
