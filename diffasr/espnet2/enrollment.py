"""Whose speech to transcribe: the enrollment of a batch, one explicit value.

An ``Enrollment`` is built once where a batch enters the model (ESPnet's data loader
batch in ``forward``, ``Speech2Text``; the API, the server and stage 6's long form build
one recording's with ``Enrollment.from_audio``, which reads and checks it once) and handed
to the encoder as an argument; no module keeps it between calls.

- ``embed`` [B, E]: a speaker embedding (ECAPA) per utterance, for a ``spk_conditioner``;
- ``speech`` [B, T'] raw 16-kHz audio, or [B, F, D] the frozen encoder's cached frames
  of the enrollment utterance, with ``speech_lengths`` [B], for an encoder that reads
  the enrollment itself (``encoder_conf enrollment``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, MutableMapping, Optional, Sequence, Tuple

import torch

# The data names of the enrollment (ESPnet's data loader adds "<name>_lengths").
ENROLL_EMBED = "enroll_embed"
ENROLL_SPEECH = "enroll_speech"
DATA_NAMES = (ENROLL_EMBED, ENROLL_SPEECH)


def _lengths_key(name: str) -> str:
    return f"{name}_lengths"


@dataclass(frozen=True)
class Enrollment:
    """The enrollment of each utterance of a batch (see the module docstring).

    ``utt_ids`` name the batch in errors.

    >>> e = Enrollment(speech=torch.zeros(2, 16000))
    >>> e.speech_lengths.tolist()
    [16000, 16000]
    """

    embed: Optional[torch.Tensor] = None
    speech: Optional[torch.Tensor] = None
    speech_lengths: Optional[torch.Tensor] = None
    utt_ids: Optional[Tuple[str, ...]] = field(default=None, compare=False)

    def __post_init__(self):
        if self.embed is not None and self.embed.dim() == 1:
            object.__setattr__(self, "embed", self.embed.unsqueeze(0))
        if self.speech is not None:
            if self.speech.dim() == 1:
                object.__setattr__(self, "speech", self.speech.unsqueeze(0))
            if self.speech_lengths is None:
                object.__setattr__(self, "speech_lengths", torch.full(
                    (self.speech.size(0),), self.speech.size(1), dtype=torch.long, device=self.speech.device))
        elif self.speech_lengths is not None:
            raise ValueError("Enrollment: speech_lengths without speech")
        if self.utt_ids is not None:
            object.__setattr__(self, "utt_ids", tuple(self.utt_ids))
        sizes = {name: t.size(0) for name, t in (("embed", self.embed), ("speech", self.speech),
                                                 ("speech_lengths", self.speech_lengths)) if t is not None}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Enrollment{self.where()}: batch sizes differ: {sizes}")

    @classmethod
    def from_batch(cls, batch: MutableMapping[str, torch.Tensor],
                   utt_ids: Optional[Sequence[str]] = None) -> "Enrollment":
        """Take the enrollment entries out of a data loader batch (they are removed from it)."""
        embed = batch.pop(ENROLL_EMBED, None)
        batch.pop(_lengths_key(ENROLL_EMBED), None)  # an embedding has no length
        speech = batch.pop(ENROLL_SPEECH, None)
        lengths = batch.pop(_lengths_key(ENROLL_SPEECH), None)
        return cls(embed=embed, speech=speech, speech_lengths=lengths, utt_ids=utt_ids)

    @classmethod
    def of_one(cls, embed: Optional[torch.Tensor] = None, speech: Optional[torch.Tensor] = None) -> "Enrollment":
        """The enrollment of one utterance: ``embed`` [E]; ``speech`` [T] audio or [F, D] frames."""
        return cls(embed=None if embed is None else embed.unsqueeze(0),
                   speech=None if speech is None else speech.unsqueeze(0))

    @classmethod
    def from_audio(cls, audio, speech2text, speaker_encoder=None, embed=None) -> "Enrollment":
        """The enrollment of one recording of the target speaker alone, built and checked once.

        ``audio``: a path, samples at the model's rate, or a ``CheckedAudio`` read for the
        enrollment role (an upload, a data set's entry: trusted as it is); anything else is
        read by ``diffasr.audio.read_audio`` (under 1 s, silent or NaN refused, over the
        model's maximum cut).  ``speech2text``: the loaded model (its rate and limits).
        ``embed``: a ready speaker embedding (stage 4's) instead of ``speaker_encoder``'s.
        Then ``prepare``: the embedding, and the frozen encoder's frames of the audio.
        """
        from diffasr.audio import CheckedAudio, Role, read_audio

        if not isinstance(audio, CheckedAudio):
            audio = read_audio(audio, Role.enrollment(speech2text.max_enrollment_seconds), speech2text.fs)
        elif audio.role != "enrollment":  # an internal contract, not user input
            raise TypeError(f"{audio.name} was read as the {audio.role}, not as an enrollment")
        samples = audio.samples()
        if embed is None and speaker_encoder is not None:
            embed = speaker_encoder.embed(samples)
        return prepare(speech2text.model, embed, samples)

    @classmethod
    def stack(cls, enrollments: Sequence["Enrollment"], utt_ids: Optional[Sequence[str]] = None) -> "Enrollment":
        """One batch from enrollments of one utterance each (audio or frames zero-padded)."""
        first = enrollments[0]
        embed = torch.cat([e.embed for e in enrollments]) if first.embed is not None else None
        speech = lengths = None
        if first.speech is not None:
            lengths = torch.cat([e.speech_lengths for e in enrollments])
            speech = first.speech.new_zeros(len(enrollments), int(lengths.max()), *first.speech.shape[2:])
            for i, e in enumerate(enrollments):
                speech[i, : int(e.speech_lengths[0])] = e.speech[0, : int(e.speech_lengths[0])]
        return cls(embed=embed, speech=speech, speech_lengths=lengths, utt_ids=utt_ids)

    def where(self) -> str:
        """`` (batch of a, b)`` for error messages, or nothing without utterance ids."""
        return f" (batch of {', '.join(self.utt_ids)})" if self.utt_ids else ""

    def to(self, device: torch.device, dtype: Optional[torch.dtype] = None) -> "Enrollment":
        """On ``device``; float tensors in ``dtype`` (lengths stay integers)."""
        move = lambda t: None if t is None else t.to(device, dtype=dtype if t.is_floating_point() else None)  # noqa: E731
        return replace(self, embed=move(self.embed), speech=move(self.speech),
                       speech_lengths=None if self.speech_lengths is None else self.speech_lengths.to(device))

    def require_embed(self, batch_size: int) -> torch.Tensor:
        if self.embed is None:
            raise ValueError(f"this model is speaker-conditioned but no enroll_embed was given{self.where()}; "
                             "add '<dir>/enroll_embed.scp,enroll_embed,kaldi_ark' to the data options")
        self._check_rows(self.embed, batch_size, "enroll_embed")
        return self.embed

    def require_speech(self, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.speech is None:
            raise ValueError(f"this model reads the enrollment audio but no enroll_speech was given"
                             f"{self.where()}; add '<dir>/enroll.scp,enroll_speech,sound' to the data options")
        self._check_rows(self.speech, batch_size, "enroll_speech")
        return self.speech, self.speech_lengths

    def _check_rows(self, tensor: torch.Tensor, batch_size: int, name: str) -> None:
        if tensor.size(0) != batch_size:
            raise ValueError(f"{name} has {tensor.size(0)} rows for a batch of {batch_size} utterances"
                             f"{self.where()}")

    def as_inputs(self) -> Dict[str, torch.Tensor]:
        """The data loader's form (``enroll_embed``, ``enroll_speech``, ``enroll_speech_lengths``)."""
        out = {}
        if self.embed is not None:
            out[ENROLL_EMBED] = self.embed
        if self.speech is not None:
            out[ENROLL_SPEECH], out[_lengths_key(ENROLL_SPEECH)] = self.speech, self.speech_lengths
        return out


NO_ENROLLMENT = Enrollment()


def prepare(model, embed=None, audio=None) -> Enrollment:
    """The enrollment of one recording, computed once: its speaker embedding as a tensor and,
    for an encoder that reads the enrollment, the frozen encoder's frames of its audio
    (so that a long recording's segments do not encode it again)."""
    import numpy as np

    speech = None
    if audio is not None and model.needs_enrollment_audio():
        speech = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        frozen = getattr(model.encoder, "frozen", None)
        if frozen is not None:
            speech = frozen(speech.unsqueeze(0), torch.tensor([speech.numel()]), "enrollment audio")[0][0]
    if embed is not None:
        embed = torch.as_tensor(np.asarray(embed, dtype=np.float32))
    return Enrollment.of_one(embed=embed, speech=speech)
