"""Transcript normalisation and sentence sources of stage 1 (diffasr.data.text)."""

import numpy as np
import pytest

from diffasr.data import DataPrepError
from diffasr.data.text import normalize_transcript, partition_sentences, read_text_file, split_sentences


@pytest.mark.parametrize("raw, expected", [
    ("Don't panic -- it's 42 o'clock, Mr. Dent!", "DON'T PANIC IT'S FORTY TWO O'CLOCK MR DENT"),
    ("He came 3rd in a field of 1,000.", "HE CAME THIRD IN A FIELD OF ONE THOUSAND"),
    ("\u2018Tis the \u201cseason\u201d\u2026", "TIS THE SEASON"),
    ("well-known  words/phrases", "WELL KNOWN WORDS PHRASES"),
    ("Caf\u00e9 na\u00efve", "CAFE NAIVE"),
    ("the 'quoted' James' hat", "THE QUOTED JAMES HAT"),
])
def test_normalize_librispeech_style(raw, expected):
    assert normalize_transcript(raw) == expected


@pytest.mark.parametrize("raw", ["", "  ...  !!", "it costs 3.50 now", "at 10:30 sharp", "an x86 chip"])
def test_normalize_unspeakable_gives_empty(raw):
    assert normalize_transcript(raw) == ""


def test_split_sentences_at_clause_marks_and_drops_enumerations():
    parts = split_sentences("(1) Avoid fried meats. Keep calm; carry on -- or not!")
    assert parts == ["Avoid fried meats.", "Keep calm;", "carry on", "or not!"]


def test_read_text_file_names_file_and_line_of_empty_sentence(tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_text("The cat sat on the mat.\n\n--- ?? ---\nAnother good line here.\n")
    with pytest.raises(DataPrepError, match=rf"{path}:3: sentence normalises to nothing"):
        read_text_file(path)


def test_read_text_file_deduplicates_after_normalisation(tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_text("The cat sat.\nthe CAT sat!\nA dog ran off.\n")
    assert read_text_file(path) == ["THE CAT SAT", "A DOG RAN OFF"]


def test_partition_is_disjoint_blended_and_seeded():
    sources = {"a": [f"A{i}" for i in range(50)], "b": [f"B{i}" for i in range(10)]}
    parts = partition_sentences(sources, [10, 4, 4], np.random.default_rng(3))
    flat = [s for p in parts for s in p]
    assert [len(p) for p in parts] == [10, 4, 4] and len(set(flat)) == 18
    assert any(s.startswith("B") for s in parts[0]) and any(s.startswith("A") for s in parts[0])
    assert parts == partition_sentences(sources, [10, 4, 4], np.random.default_rng(3))
    with pytest.raises(DataPrepError, match="only 60 distinct sentences"):
        partition_sentences(sources, [50, 10, 10], np.random.default_rng(3))
