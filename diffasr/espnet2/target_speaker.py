"""Whose speech to transcribe: the enrollment reaches the encoder of any ESPnet ASR model.

ESPnet's models call ``self.encode(speech, speech_lengths)`` and know nothing of a target
speaker.  ``TargetSpeakerMixin`` gives them the enrollment for the duration of a call:

- ``spk_conditioner`` (an enrollment *embedding*, ``enroll_embed``): FiLM hooked on the
  encoder's speaker input point, or a conditioner applied to the encoder output;
- an encoder with ``enrollment: prefix`` (the enrollment *audio*, ``enroll_speech``):
  its own frames are put before the mixture's inside the encoder.

The AR and Mask-CTC baselines are ESPnet's models with this mixin, so every system of a
comparison sees the same speaker input.
"""

import contextlib
from typing import Iterator, List, Optional, Set

import torch

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.maskctc_model import MaskCTCModel

# Optional data names that say whose speech to transcribe (see diffasr.espnet2.task).
ENROLLMENT_INPUTS = ("enroll_embed", "enroll_speech", "enroll_speech_lengths")


def speaker_input_layer(encoder: torch.nn.Module) -> torch.nn.Module:
    """The module whose output FiLM modulates: the encoder's declared point, or its input layer."""
    layer = getattr(encoder, "speaker_input_layer", None)
    return layer if layer is not None else encoder.embed


def _batch_name(utt_ids: Optional[List[str]]) -> str:
    return f" (batch of {', '.join(utt_ids)})" if utt_ids else ""


class TargetSpeakerMixin:
    """Adds ``enrolled(...)``, an ``encode`` that honours it, and ``encode_conditioned``.

    Classes using it set ``self.spk_conditioner`` (a module or None) and ``self.fill_ids``
    (token ids never written into a transcript) in ``__init__``.
    """

    _enrolled = False
    _enroll_embed = None

    def needs_enrollment_audio(self) -> bool:
        return getattr(self.encoder, "enrollment", "none") != "none"

    @contextlib.contextmanager
    def enrolled(
        self,
        enroll_embed: Optional[torch.Tensor] = None,
        enroll_speech: Optional[torch.Tensor] = None,
        enroll_speech_lengths: Optional[torch.Tensor] = None,
        utt_ids: Optional[List[str]] = None,
    ) -> Iterator[None]:
        """Encoder calls inside this block are conditioned on this enrollment."""
        with contextlib.ExitStack() as stack:
            conditioner = self.spk_conditioner
            if conditioner is not None:
                if enroll_embed is None:
                    raise ValueError(
                        f"this model is speaker-conditioned but no enroll_embed was given"
                        f"{_batch_name(utt_ids)}; add '<dir>/enroll_embed.scp,enroll_embed,kaldi_ark' "
                        "to the data options"
                    )
                if conditioner.position == "encoder_input":
                    stack.enter_context(conditioner.attached_to(speaker_input_layer(self.encoder), enroll_embed))
            if self.needs_enrollment_audio():
                if enroll_speech is None:
                    raise ValueError(
                        f"this model reads the enrollment audio but no enroll_speech was given"
                        f"{_batch_name(utt_ids)}; add '<dir>/enroll.scp,enroll_speech,sound' "
                        "to the data options"
                    )
                if enroll_speech_lengths is None:
                    enroll_speech_lengths = torch.full((enroll_speech.size(0),), enroll_speech.size(1),
                                                       dtype=torch.long, device=enroll_speech.device)
                stack.enter_context(self.encoder.enrolled(enroll_speech, enroll_speech_lengths))
            self._enrolled, self._enroll_embed = True, enroll_embed
            try:
                yield
            finally:
                self._enrolled, self._enroll_embed = False, None

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        """ESPnet's encode, with the output conditioner (if any) applied."""
        conditioned = self.spk_conditioner is not None or self.needs_enrollment_audio()
        if conditioned and not self._enrolled:
            raise ValueError("this model is speaker-conditioned: encode inside model.enrolled(...) "
                             "or call encode_conditioned")
        encoder_out, encoder_out_lens = super().encode(speech, speech_lengths)
        conditioner = self.spk_conditioner
        if conditioner is not None and conditioner.position == "encoder_output":
            if isinstance(encoder_out, tuple):  # (output, intermediate CTC outputs)
                main, encoder_out_lens = conditioner(encoder_out[0], encoder_out_lens, self._enroll_embed)
                return (main, encoder_out[1]), encoder_out_lens
            return conditioner(encoder_out, encoder_out_lens, self._enroll_embed)
        return encoder_out, encoder_out_lens

    def encode_conditioned(self, speech: torch.Tensor, speech_lengths: torch.Tensor,
                           utt_ids: Optional[List[str]] = None, **enrollment):
        """Encoder output [B, T, D] (intermediate CTC outputs dropped) and lengths."""
        with self.enrolled(utt_ids=utt_ids, **enrollment):
            encoder_out, encoder_out_lens = self.encode(speech, speech_lengths)
        return (encoder_out[0] if isinstance(encoder_out, tuple) else encoder_out), encoder_out_lens

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        """ESPnet's forward, inside ``enrolled`` (used by the ESPnet baselines)."""
        enrollment = {k: kwargs.pop(k) for k in ENROLLMENT_INPUTS if k in kwargs}
        kwargs.pop("enroll_embed_lengths", None)
        with self.enrolled(utt_ids=kwargs.get("utt_id"), **enrollment):
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)


def special_ids(token_list: List[str], *symbols: str) -> Set[int]:
    """The ids of those ``symbols`` that the token list has."""
    return {token_list.index(s) for s in symbols if s in token_list}


class TargetSpeakerESPnetModel(TargetSpeakerMixin, ESPnetASRModel):
    """ESPnet's attention encoder-decoder + CTC model with the enrollment (``model: espnet``)."""

    def __init__(self, *args, spk_conditioner: Optional[torch.nn.Module] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.spk_conditioner = spk_conditioner
        # The diffusion models' mask symbol is in a shared token list too.
        self.fill_ids = {self.sos, self.eos} | special_ids(
            self.token_list, kwargs.get("sym_blank", "<blank>"), "<mask>")


class TargetSpeakerMaskCTCModel(TargetSpeakerMixin, MaskCTCModel):
    """ESPnet's Mask-CTC model with the enrollment (``model: maskctc``)."""

    def __init__(self, *args, spk_conditioner: Optional[torch.nn.Module] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.spk_conditioner = spk_conditioner
        self.fill_ids = {self.sos, self.eos, self.mask_token} | special_ids(
            self.token_list, kwargs.get("sym_blank", "<blank>"))
