"""Characters or a small subword set as CTC units for a model whose token list is too
large for a CTC head.

A CTC head over Whisper's 51,865 tokens would project every 20-ms frame onto 51,865
classes, several times the cost of the rest of a CPU training step.  Characters make a
30-way CTC head; the model still writes Whisper tokens.  Each token's characters come
from its surface text, so targets are built from the token ids the data loader gives;
a CTC hypothesis goes back to tokens through the tokenizer (for the canvas length and
for deliberating the CTC pass).

>>> from diffasr.whisper.tokenizer import WhisperTextTokenizer, whisper_token_list
>>> units = CharacterUnits(whisper_token_list(), WhisperTextTokenizer())
>>> ids = units.tokenizer.text2ids("HI THERE")
>>> targets, lengths = units.targets(torch.tensor([ids]), torch.tensor([len(ids)]))
>>> units.text(targets[0, : lengths[0]].tolist())
'HI THERE'

``SubwordUnits`` do the same with the recipe's own SentencePiece model (stage 2's
``bpe_unigram100``: a 101-way head whose targets are 2-3 times shorter than the
characters).
"""

from pathlib import Path
from typing import List, Sequence, Tuple, Union

import torch

ALPHABET = ("<blank>", "<unk>", " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")
BLANK, UNK = 0, 1


class CharacterUnits:
    """Maps token ids to character ids (for CTC targets) and character ids to text/tokens."""

    def __init__(self, token_list: Sequence[str], tokenizer):
        self.tokenizer = tokenizer
        index = {c: i for i, c in enumerate(ALPHABET)}
        self.chars_of_token = []
        for token in token_list:
            surface = tokenizer.surface(token).lower()
            self.chars_of_token.append([index.get(c, UNK) for c in surface])

    def __len__(self) -> int:
        return len(ALPHABET)

    @property
    def blank_id(self) -> int:
        return BLANK

    def targets(self, text: torch.Tensor, text_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Character targets [B, C] (-1 padded) and lengths of token ids [B, U]."""
        rows = []
        for b in range(text.size(0)):
            chars = [c for t in text[b, : int(text_lengths[b])].tolist() for c in self.chars_of_token[t]]
            while chars and chars[0] == index_of_space():
                chars.pop(0)  # the leading space of Whisper's first token
            # a token with no letters is unknown; no token at all (target absent) is all blank
            rows.append(chars or ([UNK] if int(text_lengths[b]) > 0 else []))
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=text.device)
        padded = torch.full((len(rows), max(1, int(lengths.max()))), -1, dtype=torch.long, device=text.device)
        for b, row in enumerate(rows):
            padded[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        return padded, lengths

    def text(self, char_ids: Sequence[int]) -> str:
        """Upper-case words of a character sequence (blank and unknown dropped)."""
        return " ".join("".join(ALPHABET[c] for c in char_ids if c > UNK).split()).upper()

    def tokens(self, char_ids: Sequence[int]) -> List[int]:
        """Token ids of a character sequence, through the tokenizer."""
        return self.tokenizer.text2ids(self.text(char_ids))


def index_of_space() -> int:
    return ALPHABET.index(" ")


class SubwordUnits:
    """A SentencePiece model's pieces as CTC units (class 0 is the blank, piece i is i + 1).

    Targets come from the transcript's text (the token ids decoded by ``tokenizer``, upper
    case as the recipe's transcripts and its SentencePiece model are); a hypothesis goes
    back to tokens through the same text.
    """

    def __init__(self, bpemodel: Union[str, Path], tokenizer):
        import sentencepiece

        if not Path(bpemodel).is_file():
            raise ValueError(f"model_conf ctc_units: bpe needs --bpemodel; {bpemodel} does not exist "
                             "(stage 2 writes data/token_list/bpe_*/bpe.model)")
        self.processor = sentencepiece.SentencePieceProcessor(model_file=str(bpemodel))
        self.tokenizer = tokenizer
        self.vocabulary = tokenizer.vocabulary

    def __len__(self) -> int:
        return self.processor.get_piece_size() + 1

    @property
    def blank_id(self) -> int:
        return BLANK

    def targets(self, text: torch.Tensor, text_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Piece targets [B, P] (-1 padded) and lengths of token ids [B, U]."""
        rows = []
        for b in range(text.size(0)):
            words = self.tokenizer.tokens2text(self.vocabulary[t] for t in text[b, : int(text_lengths[b])].tolist())
            rows.append([i + 1 for i in self.processor.encode(words)] if words else [])
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=text.device)
        padded = torch.full((len(rows), max(1, int(lengths.max()))), -1, dtype=torch.long, device=text.device)
        for b, row in enumerate(rows):
            padded[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        return padded, lengths

    def text(self, unit_ids: Sequence[int]) -> str:
        """The words of a piece sequence (blank dropped)."""
        return " ".join(self.processor.decode([u - 1 for u in unit_ids if u != BLANK]).split())

    def tokens(self, unit_ids: Sequence[int]) -> List[int]:
        """Token ids of a piece sequence, through the tokenizer."""
        return self.tokenizer.text2ids(self.text(unit_ids))


CTCUnits = Union[CharacterUnits, SubwordUnits]  # what model_conf ctc_units builds
