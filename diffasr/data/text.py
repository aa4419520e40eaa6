"""Transcript normalisation and sentence sources for the embedded corpus.

Transcripts follow LibriSpeech: upper-case words, apostrophes inside words kept,
no other punctuation, numbers spelled out. Sentences come from Debian text
packages (fortune-mod's fortunes, WordNet glosses) or from a user file.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from num2words import num2words

from diffasr.data import DataPrepError

FORTUNE_DIR = Path("/usr/share/games/fortunes")
# Prose-like collections; the others are mostly code, ASCII art or jargon.
FORTUNE_FILES = ("fortunes", "wisdom", "literature", "people", "humorists", "platitudes", "pets",
                 "food", "love", "education", "work", "politics", "science", "law", "medicine",
                 "riddles", "songs-poems", "sports", "tao", "kids", "miscellaneous", "magic",
                 "pratchett", "goedel", "paradoxum")
WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")

MIN_WORDS, MAX_WORDS = 4, 20

_NUMBER = re.compile(r"^(\d+)(st|nd|rd|th)?$", re.IGNORECASE)
_WORD = re.compile(r"^[A-Z]+(?:'[A-Z]+)*$")
# Harvested text with these is markup, code, an address or a formula, not speech.
_UNSPEAKABLE = re.compile(r"[@/\\<>{}\[\]|_=#*~^`$%+]|https?:|www\.|[\x00-\x08\x0b-\x1f\ufffd]")


def _spell_number(token: str) -> str:
    """'42' -> 'forty two', '3rd' -> 'third'; '' for what is not a plain count."""
    match = _NUMBER.match(token)
    if not match or len(match.group(1)) > 9:
        return ""
    value = int(match.group(1))
    words = num2words(value, to="ordinal" if match.group(2) else "cardinal")
    return words.replace("-", " ").replace(",", "")


def normalize_transcript(text: str) -> str:
    """LibriSpeech-normalise one sentence; '' when nothing speakable is left.

    >>> normalize_transcript("Don't panic -- it's 42 o'clock, Mr. Dent!")
    "DON'T PANIC IT'S FORTY TWO O'CLOCK MR DENT"

    A number that is not a plain count (3.5, 1:30, x86) makes the whole sentence
    unusable, since a reader could say it several ways: the result is ''.
    """
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").replace("\u2018", "'"))
    text = text.encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)  # 1,000 -> 1000
    text = re.sub(r"[-\u2013\u2014/]+", " ", text)
    words: List[str] = []
    for raw in text.split():
        if any(c.isdigit() for c in raw):
            # Only surrounding punctuation may go: "3.50" or "10:30" must not become a count.
            spelled = _spell_number(re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", raw))
            if not spelled:
                return ""
            words.extend(spelled.upper().split())
            continue
        token = re.sub(r"[^A-Za-z']", "", raw).strip("'")
        if not token:
            continue
        token = token.upper()
        if not _WORD.match(token):  # e.g. DON''T
            token = re.sub(r"'+", "'", token)
        words.append(token)
    return " ".join(words)


def split_sentences(paragraph: str) -> List[str]:
    """Split prose into sentences or clauses at . ! ? ; : and dashes."""
    paragraph = re.sub(r"\([^)]*\)", " ", paragraph)  # enumerations, asides
    parts = re.split(r"(?<=[.!?;:])\s+|\s--\s|\s-\s", paragraph)
    return [p.strip() for p in parts if p and p.strip()]


def _usable(sentence: str) -> str:
    """The normalised sentence if it is speakable prose of the right length, else ''."""
    if _UNSPEAKABLE.search(sentence):
        return ""
    norm = normalize_transcript(sentence)
    n = len(norm.split())
    return norm if MIN_WORDS <= n <= MAX_WORDS else ""


def fortune_sentences(fortune_dir: os.PathLike = FORTUNE_DIR) -> List[str]:
    """Sentences from fortune-mod collections (entries separated by '%' lines)."""
    out: List[str] = []
    for name in FORTUNE_FILES:
        path = Path(fortune_dir) / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            # Attribution lines ("-- Author") are not part of what is said.
            lines = [ln for ln in entry.splitlines() if not ln.strip().startswith("--")]
            for sentence in split_sentences(" ".join(lines)):
                norm = _usable(sentence)
                if norm:
                    out.append(norm)
    return out


def wordnet_sentences(wordnet_dir: os.PathLike = WORDNET_DIR) -> List[str]:
    """Glosses and quoted usage examples from WordNet's data.* files."""
    out: List[str] = []
    for name in WORDNET_FILES:
        path = Path(wordnet_dir) / name
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:  # licence header
                    continue
                gloss = line.split(" | ", 1)[1]
                for part in gloss.split(";"):
                    norm = _usable(part.strip().strip('"'))
                    if norm:
                        out.append(norm)
    return out


@functools.lru_cache(maxsize=1)  # a few seconds of parsing; the result is only read
def debian_sentences() -> Dict[str, List[str]]:
    """Unique normalised sentences per Debian source, in file order."""
    sources = {"fortunes": fortune_sentences(), "wordnet": wordnet_sentences()}
    seen: set = set()
    out: Dict[str, List[str]] = {}
    for name, sentences in sources.items():
        unique = []
        for s in sentences:
            if s not in seen:
                seen.add(s)
                unique.append(s)
        out[name] = unique
    if not any(out.values()):
        raise DataPrepError(f"no sentences found in {FORTUNE_DIR} or {WORDNET_DIR}: "
                            "install the Debian packages fortunes and wordnet-base, or pass --text_file")
    return out


def read_text_file(path: os.PathLike) -> List[str]:
    """Sentences of a user file, one per line; a line that normalises to nothing is an error."""
    path = Path(path)
    out: List[str] = []
    seen: set = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            norm = normalize_transcript(line)
            if not norm:
                raise DataPrepError(f"{path}:{lineno}: sentence normalises to nothing "
                                    f"(no words, or a number that cannot be spelled out): {line.strip()!r}")
            if norm not in seen:
                seen.add(norm)
                out.append(norm)
    return out


def partition_sentences(sources: Dict[str, List[str]], counts: Sequence[int],
                        rng: np.random.Generator) -> List[List[str]]:
    """Disjoint sentence lists of the given sizes, mixing the sources evenly.

    Each source is shuffled, then sources are interleaved round-robin so that every
    split gets the same blend (fortunes are rarer than WordNet glosses).
    """
    pools = [[s[i] for i in rng.permutation(len(s))] for _, s in sorted(sources.items()) if s]
    needed = sum(counts)
    blended: List[str] = []
    index = 0
    while len(blended) < needed and any(index < len(p) for p in pools):
        blended.extend(p[index] for p in pools if index < len(p))
        index += 1
    if len(blended) < needed:
        raise DataPrepError(f"only {len(blended)} distinct sentences available, {needed} needed")
    out, start = [], 0
    for n in counts:
        out.append([str(s) for s in blended[start:start + n]])
        start += n
    return out
