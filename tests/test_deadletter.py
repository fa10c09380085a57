"""The dead-letter file keeps every rejected message, but never more than a bounded part of
one: a huge garbage message is cut, and the letter says how much was left out."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tickpipe.credentials import read_secret
from tickpipe.deadletter import MAX_PAYLOAD_CHARS, DeadLetter, DeadLetters


def test_a_huge_payload_is_cut_to_a_bounded_length_and_counted(tmp_path: Path) -> None:
    letters = DeadLetters(tmp_path / "dead.jsonl")
    letters.write("feed", "not JSON", b"g" * 5_000_000)
    letters.write("feed", "not JSON", "short")
    letters.close()
    huge, short = [
        msgspec.json.decode(line, type=DeadLetter)
        for line in (tmp_path / "dead.jsonl").read_bytes().splitlines()
    ]
    assert len(huge.payload) == MAX_PAYLOAD_CHARS
    assert huge.cut == 5_000_000 - MAX_PAYLOAD_CHARS
    assert short.payload == "short" and short.cut == 0
    assert b'"cut"' not in (tmp_path / "dead.jsonl").read_bytes().splitlines()[1]
    assert letters.cut == 1 and letters.total == 2


def test_a_letter_never_holds_a_secret_the_process_has_read(tmp_path: Path) -> None:
    read_secret("T", {"T": "tok/en+1"})
    letters = DeadLetters(tmp_path / "dead.jsonl")
    letters.write("feed", "bad frame from wss://x/?token=tok%2Fen%2B1", b'{"token": "tok/en+1"}')
    letters.close()
    text = (tmp_path / "dead.jsonl").read_text()
    assert "tok/en" not in text and "tok%2F" not in text and text.count("***") == 2
