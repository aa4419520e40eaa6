"""Characters as CTC units for a model whose token list is too large for a CTC head.

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
"""

from typing import List, Sequence, Tuple

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
