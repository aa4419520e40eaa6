"""Whisper's English BPE as an ESPnet tokenizer and token list (``token_type: whisper_en``).

openai-whisper ships its tokenizer files (``gpt2.tiktoken``) inside the package, so this
works offline.  ESPnet's own ``whisper_en`` tokenizer expects an older openai-whisper
whose tokenizer wrapped Hugging Face's (``Tokenizer.tokenizer``); current releases use
tiktoken, so ESPnet's breaks with an AttributeError.  This wrapper is what diffasr uses
instead.

Transcripts here are upper-case (LibriSpeech style) while Whisper was trained on cased
text, where upper-case words split into many rare pieces.  So text is lower-cased and
given Whisper's leading space before encoding, and decoded text is upper-cased again:
``"HELLO WORLD"`` <-> ``["Ġhello", "Ġworld"]``.

Token strings are GPT-2's printable byte encoding (``Ġ`` for a leading space), the same
strings as CTranslate2's ``vocabulary.txt``; special tokens keep Whisper's names
(``<|endoftext|>``, ``<|startoftranscript|>``, ...).

>>> tokenizer = WhisperTextTokenizer()
>>> tokenizer.text2tokens("HELLO WORLD")
['Ġhello', 'Ġworld']
>>> tokenizer.tokens2text(['Ġhello', 'Ġworld'])
'HELLO WORLD'
"""

from functools import lru_cache
from typing import Dict, Iterable, List

from espnet2.text.abs_tokenizer import AbsTokenizer

TOKEN_TYPE = "whisper_en"
END = "<|endoftext|>"
START = "<|startoftranscript|>"
NO_TIMESTAMPS = "<|notimestamps|>"
MASK = "<mask>"  # appended after Whisper's vocabulary for the diffusion decoder


def is_control_token(token: str) -> bool:
    """True for Whisper's control tokens (``<|endoftext|>``, ``<|startoftranscript|>``,
    timestamps, ...) and the mask: tokens that carry no text."""
    return token.startswith("<|") or token == MASK


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (space -> 'Ġ')."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> Dict[str, int]:
    return {char: b for b, char in _bytes_to_unicode().items()}


def pieces_text(pieces: Iterable[str]) -> str:
    """The text of byte-level pieces (``\u0120p``, ``\u00c3\u00a9`` -> `` pé``), control tokens left out.

    >>> pieces_text(["\u0120p", "\u00c3\u00a9", "ace"])
    ' péace'
    """
    byte_of = _unicode_to_bytes()
    data = bytearray()
    for piece in pieces:
        if not is_control_token(piece):
            data.extend(byte_of[c] for c in piece)
    return data.decode("utf-8", errors="replace")


def is_byte_level(pieces: Iterable[str]) -> bool:
    """True when every piece is made of GPT-2's byte characters (Whisper's tokens)."""
    byte_of = _unicode_to_bytes()
    return all(is_control_token(p) or all(c in byte_of for c in p) for p in pieces)


@lru_cache(maxsize=1)
def _encoding():
    from whisper.tokenizer import get_tokenizer

    return get_tokenizer(multilingual=False).encoding


@lru_cache(maxsize=1)
def whisper_vocabulary() -> tuple:
    """Whisper's English vocabulary as strings, in id order (51,864 entries)."""
    encoding = _encoding()
    byte_map = _bytes_to_unicode()
    special = {i: name for name, i in encoding._special_tokens.items()}
    return tuple(
        special[i] if i in special else "".join(byte_map[b] for b in encoding.decode_single_token_bytes(i))
        for i in range(encoding.n_vocab)
    )


def whisper_token_list() -> List[str]:
    """ESPnet token list: Whisper's vocabulary, then ``<mask>``."""
    return list(whisper_vocabulary()) + [MASK]


class WhisperTextTokenizer(AbsTokenizer):
    """Lower-cased Whisper BPE for upper-case transcripts (see the module docstring)."""

    def __init__(self):
        self.encoding = _encoding()
        self.vocabulary = whisper_vocabulary()
        self.index = {token: i for i, token in enumerate(self.vocabulary)}

    def __repr__(self):
        return f"{self.__class__.__name__}({TOKEN_TYPE})"

    def text2ids(self, line: str) -> List[int]:
        line = " ".join(line.split()).lower()
        return self.encoding.encode_ordinary(" " + line) if line else []

    def text2tokens(self, line: str) -> List[str]:
        return [self.vocabulary[i] for i in self.text2ids(line)]

    def surface(self, token: str) -> str:
        """The text of one token as Whisper writes it (lower case, leading space kept)."""
        return pieces_text([token])

    def tokens2text(self, tokens: Iterable[str]) -> str:
        return " ".join(pieces_text(tokens).split()).upper()
