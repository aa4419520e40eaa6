"""The clean-target teacher applied to the decoder: what Whisper would say if only the target spoke.

The encoder's teacher (``diffasr.espnet2.teacher``) is Whisper's encoder output on the target
source alone.  Run Whisper's own decoder, frozen as it was pre-trained, over that output,
teacher-forced on the reference, and it gives at every position a distribution over the next
token: zero-shot Whisper's reading of the clean target.  The AR system's decoder, reading the
mixture and the enrollment, is trained towards those distributions (KL, ``model_conf
decoder_teacher_weight``) next to the references' cross-entropy: a soft target per token that
both keeps Whisper's own skill (issue: real speech) and says whose words to read (selection).

Whisper writes cased, punctuated text; the transcripts here are lower-cased letters and
apostrophes (``diffasr.whisper.tokenizer``).  ``TranscriptFold`` moves the teacher's
probability of a cased piece to its lower-cased piece (``ĠThe`` -> ``Ġthe``), drops what no
transcript can hold (punctuation, digits, control tokens other than the end) and renormalises,
so the soft target lives where the references do.
"""

import re
from functools import lru_cache
from typing import List, Optional

import torch

from diffasr.whisper.tokenizer import END, _bytes_to_unicode, is_control_token, pieces_text

# The text a transcript piece may carry: an optional leading space, then lower-case letters
# and apostrophes (LibriSpeech's alphabet, lower-cased for Whisper's BPE).
_TRANSCRIPT_PIECE = re.compile(r"^ ?[a-z']+$")


class TranscriptFold:
    """Maps a distribution over the token list onto the pieces a transcript can hold.

    ``target[v]``: the id that token ``v``'s probability moves to (its lower-cased piece
    where that is one token, else itself); ``kept[v]``: whether a transcript can hold
    token ``v`` (after the move).
    """

    def __init__(self, token_list: List[str]):
        ids = {token: i for i, token in enumerate(token_list)}
        byte_char = _bytes_to_unicode()
        target, kept = list(range(len(token_list))), [False] * len(token_list)
        for i, token in enumerate(token_list):
            if token == END:
                kept[i] = True
                continue
            if is_control_token(token):
                continue
            text = pieces_text([token])
            lower = "".join(byte_char[b] for b in text.lower().encode("utf-8"))
            if lower in ids:
                target[i] = ids[lower]
            kept[i] = bool(_TRANSCRIPT_PIECE.match(pieces_text([token_list[target[i]]])))
        self.target = torch.tensor(target)
        self.kept = torch.tensor(kept)

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        """``probs`` [..., V] folded onto the transcript pieces, renormalised (rows with no
        mass left stay all zero)."""
        target = self.target.to(probs.device).expand_as(probs)
        folded = torch.zeros_like(probs).scatter_add_(-1, target, probs)
        folded = folded * self.kept.to(probs.device, probs.dtype)
        return folded / folded.sum(dim=-1, keepdim=True).clamp(min=1e-12)


def decoder_teacher_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                       targets: torch.Tensor, ignore_id: int) -> torch.Tensor:
    """KL(teacher || student) summed over each utterance's positions whose ``targets``
    [B, L] are not ``ignore_id``, averaged over the utterances (ESPnet's attention loss is
    normalised so, ``length_normalized_loss: false``: a weight of 1 puts both on one
    scale); zero exactly when the student's distributions there equal the teacher's."""
    log_student = torch.log_softmax(student_logits.float(), dim=-1)
    teacher = teacher_probs.float()
    per_token = (teacher * (teacher.clamp(min=1e-12).log() - log_student)).sum(dim=-1)
    inside = (targets != ignore_id).to(per_token.dtype)
    return (per_token * inside).sum() / targets.size(0)


@lru_cache(maxsize=2)
def _frozen_whisper_decoder(whisper_model: str, vocab_size: int, width: int):
    from diffasr.espnet2.whisper_decoder import WhisperARDecoder

    decoder = WhisperARDecoder(vocab_size, width, whisper_model=whisper_model, pretrained=True)
    decoder.requires_grad_(False).eval()
    return decoder


class DecoderTeacher:
    """Zero-shot Whisper's next-token distributions on the clean target, folded onto the
    transcript pieces.  Its decoder is Whisper's, loaded once and frozen; it is not a
    submodule of the model (not trained, not saved in checkpoints)."""

    def __init__(self, whisper_model: str, token_list: List[str], width: int):
        self.whisper_model, self.vocab_size, self.width = whisper_model, len(token_list), width
        self.fold = TranscriptFold(token_list)

    @torch.no_grad()
    def soft_targets(self, teacher_feats: torch.Tensor, teacher_lengths: torch.Tensor,
                     ys_in: torch.Tensor, ys_in_lens: torch.Tensor) -> torch.Tensor:
        """[B, L, V]: Whisper's decoder over ``teacher_feats`` [B, T, D], teacher-forced on
        ``ys_in`` (the model's sos + reference), folded."""
        decoder = _frozen_whisper_decoder(self.whisper_model, self.vocab_size, self.width)
        decoder.to(teacher_feats.device)
        logits, _ = decoder(teacher_feats, teacher_lengths, ys_in, ys_in_lens)
        return self.fold(torch.softmax(logits.float(), dim=-1))


def build_decoder_teacher(weight: float, decoder, token_list: List[str],
                          teacher_only: bool) -> Optional[DecoderTeacher]:
    """The ``DecoderTeacher`` for ``model_conf decoder_teacher_weight`` (None at 0), checked
    at build time.  Phase 1 (``teacher_only``) has no decoder pass: no decoder teacher."""
    if weight < 0.0:
        raise ValueError(f"model_conf decoder_teacher_weight must be >= 0, got {weight}")
    if weight == 0.0 or teacher_only:
        return None
    from diffasr.espnet2.whisper_decoder import WhisperARDecoder

    if not isinstance(decoder, WhisperARDecoder):
        raise ValueError("model_conf decoder_teacher_weight > 0 matches Whisper's next-token distributions: "
                         f"it needs decoder: whisper_ar (this model's decoder is {type(decoder).__name__})")
    return DecoderTeacher(decoder.whisper_model, token_list, decoder.decoder.ln.normalized_shape[0])

