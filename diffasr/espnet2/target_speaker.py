"""Whose speech to transcribe: the enrollment reaches the encoder of any ESPnet ASR model.

ESPnet's models call ``self.encode(speech, speech_lengths)`` and know nothing of a target
speaker.  ``TargetSpeakerMixin.encode`` takes the ``Enrollment`` as a third argument and
runs ESPnet's encoding steps (frontend, SpecAugment, normalisation, pre-encoder,
encoder, post-encoder) with it:

- an encoder that reads the enrollment (``takes_enrollment``: ``encoder: whisper`` with
  ``enrollment: prefix``) gets it as an argument, and so does its speaker input point
  (FiLM of the embedding, ``input_transform``);
- ESPnet's own encoders have no such argument: FiLM at their input is a forward hook on
  ``encoder.embed`` for the duration of that one call;
- a conditioner at the encoder output is applied to it.

The AR and Mask-CTC baselines are ESPnet's models with this mixin; their ``forward``
encodes with the batch's enrollment and computes ESPnet's losses from that output, so
every system of a comparison sees the same speaker input.
"""

import contextlib
import functools
from typing import List, Optional, Set

import torch

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.maskctc_model import MaskCTCModel
from espnet2.legacy.nets.pytorch_backend.nets_utils import th_accuracy
from espnet2.legacy.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from espnet2.torch_utils.device_funcs import force_gatherable

from diffasr.datadir import TARGET_ACTIVITY as ACTIVITY
from diffasr.espnet2.ctc_units import CTCUnits
from diffasr.espnet2.decoder_teacher import build_decoder_teacher, decoder_teacher_kl
from diffasr.espnet2.enrollment import NO_ENROLLMENT, Enrollment
from diffasr.espnet2.precision import check_train_autocast, forward_autocast
from diffasr.espnet2.teacher import FORMS as TEACHER_FORMS
from diffasr.espnet2.teacher import TEACHER, TEACHER_OTHERS, feature_follows, teacher_distance
from diffasr.espnet2.whisper_encoder import EncoderStates
from diffasr.whisper.tokenizer import is_control_token


class TargetSpeakerMixin:
    """``encode(speech, speech_lengths, enrollment)`` for a model with an enrollment.

    Classes using it set ``self.spk_conditioner`` (a module or None) and ``self.fill_ids``
    (token ids never written into a transcript) in ``__init__``; ``ctc_units`` (characters
    as CTC's classes) is None unless a model sets it.
    """

    ctc_units: Optional[CTCUnits] = None

    def needs_enrollment_audio(self) -> bool:
        return getattr(self.encoder, "enrollment", "none") != "none"

    def is_speaker_conditioned(self) -> bool:
        return self.spk_conditioner is not None or self.needs_enrollment_audio()

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor,
               enrollment: Enrollment = NO_ENROLLMENT):
        """Encoder output [B, T, D] and lengths [B], conditioned on ``enrollment``."""
        encoder_out, encoder_out_lens, _ = self.encode_with_states(speech, speech_lengths, enrollment)
        return encoder_out, encoder_out_lens

    def encode_with_states(self, speech: torch.Tensor, speech_lengths: torch.Tensor,
                           enrollment: Enrollment = NO_ENROLLMENT):
        """``encode``, and the encoder's ``EncoderStates`` (the per-frame probability that the
        enrolled voice speaks, Whisper's own output before the adapter), or None for an
        encoder that gives none (ESPnet's)."""
        batch = speech.size(0)
        feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        if self.specaug is not None and self.training:
            feats, feats_lengths = self.specaug(feats, feats_lengths)
        if self.normalize is not None:
            feats, feats_lengths = self.normalize(feats, feats_lengths)
        if self.preencoder is not None:
            feats, feats_lengths = self.preencoder(feats, feats_lengths)

        conditioner = self.spk_conditioner
        embed = enrollment.require_embed(batch) if conditioner is not None else None
        extra, hook = {}, contextlib.nullcontext()
        if getattr(self.encoder, "takes_enrollment", False):
            extra["enrollment"] = enrollment
            if conditioner is not None and conditioner.position == "encoder_input":
                extra["input_transform"] = functools.partial(conditioner.modulate, enroll_embed=embed)
        elif conditioner is not None and conditioner.position == "encoder_input":
            hook = conditioner.attached_to(self.encoder.embed, embed)
        with hook:
            encoder_out, encoder_out_lens, states = self.encoder(feats, feats_lengths, **extra)
        states = states if isinstance(states, EncoderStates) else None
        if isinstance(encoder_out, tuple):  # (output, intermediate CTC outputs): not used here
            encoder_out = encoder_out[0]
        if self.postencoder is not None:
            encoder_out, encoder_out_lens = self.postencoder(encoder_out, encoder_out_lens)
        if conditioner is not None and conditioner.position == "encoder_output":
            encoder_out, encoder_out_lens = conditioner(encoder_out, encoder_out_lens, embed)
        return encoder_out, encoder_out_lens, states

    def set_teacher(self, teacher_weight: float, teacher_form: str, teacher_only: bool) -> None:
        """The clean-target teacher loss's options (``model_conf``), checked at build time."""
        if teacher_weight < 0.0:
            raise ValueError(f"model_conf teacher_weight must be >= 0, got {teacher_weight}")
        if teacher_form not in TEACHER_FORMS:
            raise ValueError(f"model_conf teacher_form must be one of {TEACHER_FORMS}, got {teacher_form!r}")
        if teacher_only and teacher_weight == 0.0:
            raise ValueError("model_conf teacher_only trains on the teacher loss alone: set teacher_weight > 0")
        if teacher_weight > 0.0:
            if getattr(self.encoder, "trainable_layers", 0) == 0:
                raise ValueError("model_conf teacher_weight > 0 trains Whisper's own layers to reproduce the "
                                 "clean-target teacher: it needs encoder: whisper with frozen_layers below "
                                 "Whisper's depth (this encoder has no trainable Whisper layer)")
            if getattr(self.encoder, "subsample", 1) != 1:
                raise ValueError("model_conf teacher_weight > 0 compares 20-ms frames with the teacher's: "
                                 "it needs encoder_conf subsample: 1")
        self.teacher_weight, self.teacher_form, self.teacher_only = teacher_weight, teacher_form, teacher_only

    def teacher_loss(self, states: Optional[EncoderStates], batch: dict, stats: dict,
                     utt_ids: Optional[List[str]] = None) -> Optional[torch.Tensor]:
        """The distance of Whisper's output on the mixture (``states.whisper_out``) from the
        clean-target teacher (``diffasr.espnet2.teacher``), weighted ``teacher_weight``;
        None when the weight is 0.  With the interferers' teachers in the batch (a
        validation set), ``feature_follows``: the share of examples whose output is nearer
        to their target's teacher than to every interferer's.  The teachers are taken out
        of ``batch``."""
        teacher, teacher_lengths = batch.pop(TEACHER, None), batch.pop(f"{TEACHER}_lengths", None)
        others = batch.pop(TEACHER_OTHERS, None)
        batch.pop(f"{TEACHER_OTHERS}_lengths", None)
        if self.teacher_weight == 0.0:
            return None
        if teacher is None:
            raise ValueError(f"model_conf teacher_weight > 0 needs the data '<cache>/{TEACHER}.scp,{TEACHER},"
                             "kaldi_ark' (python -m diffasr.bin.extract_teachers; asr.sh stage 5 writes it)")
        student, lengths = states.whisper_out, states.lengths
        wrong = (teacher_lengths != lengths).nonzero().flatten().tolist()
        if wrong:
            i = wrong[0]
            name = f"'{utt_ids[i]}'" if utt_ids is not None else f"#{i} of the batch"
            raise ValueError(f"the teacher of example {name} has {int(teacher_lengths[i])} frames and its "
                             f"mixture {int(lengths[i])}: the teacher cache was made for other audio")
        frames = student.size(1)
        teacher = teacher[:, :frames].to(student.device)
        loss = teacher_distance(student, teacher, lengths, self.teacher_form).mean()
        stats["loss_teacher"] = loss.detach()
        if others is not None and not self.training:
            follows, scored = feature_follows(student.detach(), teacher, others[:, :frames], lengths)
            if scored.any():
                stats["feature_follows"] = follows[scored].float().mean()
        return self.teacher_weight * loss

    def activity_loss(self, states: Optional[EncoderStates], batch: dict, stats: dict) -> Optional[torch.Tensor]:
        """Binary cross-entropy of the encoder's per-frame decision that the enrolled voice
        speaks against ``target_activity`` (stage 1's labels), weighted ``activity_weight``;
        None when the weight is 0.  The labels are taken out of ``batch``."""
        labels = batch.pop(ACTIVITY, None)
        label_lengths = batch.pop(f"{ACTIVITY}_lengths", None)
        if self.activity_weight == 0.0:
            return None
        activity = None if states is None else states.activity
        if activity is None:
            raise ValueError("model_conf activity_weight > 0 needs a conditioning that decides per frame "
                             "whether the enrolled voice speaks (encoder_conf enrollment: frame_transform)")
        if labels is None:
            raise ValueError(f"model_conf activity_weight > 0 needs the data '<dir>/{ACTIVITY}.scp,"
                             f"{ACTIVITY},kaldi_ark' (stage 1 writes it)")
        frames = min(activity.size(1), labels.size(1))
        inside = (torch.arange(frames, device=labels.device)[None, :] < label_lengths[:, None]).float()
        per_frame = torch.nn.functional.binary_cross_entropy(
            activity[:, :frames].float().clamp(1e-6, 1 - 1e-6), labels[:, :frames].float(), reduction="none")
        # Each utterance's mean over its frames, then the mean over utterances: ESPnet's
        # trainer weights every process's loss by its utterances, so under DDP the halves of a
        # batch then add up to exactly the one-process loss (a mean over all frames would not).
        loss = ((per_frame * inside).sum(1) / inside.sum(1).clamp(min=1)).mean()
        stats["loss_activity"] = loss.detach()
        return self.activity_weight * loss

    def _check_single_output_branch(self) -> None:
        if self.interctc_weight != 0.0:
            raise ValueError("interctc_weight is not supported with an enrollment (model_conf)")


def special_ids(token_list: List[str], *symbols: str) -> Set[int]:
    """The ids of those ``symbols`` that the token list has, and of every control token
    (Whisper's ``<|...|>``: start, task, timestamps), which carry no text and are never
    written into a hypothesis."""
    ids = {token_list.index(s) for s in symbols if s in token_list}
    return ids | {i for i, token in enumerate(token_list) if is_control_token(token)}


def _weighted(ctc_weight: float, loss_ctc: Optional[torch.Tensor], loss_decoder: Optional[torch.Tensor]):
    if ctc_weight == 0.0:
        return loss_decoder
    if ctc_weight == 1.0:
        return loss_ctc
    return ctc_weight * loss_ctc + (1 - ctc_weight) * loss_decoder


class TargetSpeakerESPnetModel(TargetSpeakerMixin, ESPnetASRModel):
    """ESPnet's attention encoder-decoder + CTC model with the enrollment (``model: espnet``).

    ``activity_weight``: weight of the frame-level target-activity loss (``activity_loss``);
    ``train_autocast``: precision of the forward pass on CPU (``diffasr.espnet2.precision``);
    ``ctc_units`` (characters): CTC's output classes instead of the token list, for a token
    list too large for a CTC head (Whisper's); the beam search then decodes without CTC;
    ``decoder_teacher_weight``: weight of the KL to zero-shot Whisper's next-token
    distributions on the clean target (``diffasr.espnet2.decoder_teacher``), next to the
    references' cross-entropy.
    """

    def __init__(self, *args, spk_conditioner: Optional[torch.nn.Module] = None, activity_weight: float = 0.0,
                 teacher_weight: float = 0.0, teacher_form: str = "mse", teacher_only: bool = False,
                 decoder_teacher_weight: float = 0.0, train_autocast: str = "none",
                 ctc_units: Optional[CTCUnits] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ctc_units = ctc_units
        self.spk_conditioner = spk_conditioner
        self.activity_weight = activity_weight
        self.set_teacher(teacher_weight, teacher_form, teacher_only)
        self.decoder_teacher_weight = decoder_teacher_weight
        self.decoder_teacher = build_decoder_teacher(decoder_teacher_weight, self.decoder, self.token_list,
                                                     teacher_only)
        self.train_autocast = check_train_autocast(train_autocast)
        self._check_single_output_branch()
        if self.use_transducer_decoder:
            raise ValueError("a transducer decoder is not supported with an enrollment")
        # The diffusion models' mask symbol is in a shared token list too.
        self.fill_ids = {self.sos, self.eos} | special_ids(
            self.token_list, kwargs.get("sym_blank", "<blank>"), "<mask>")

    def _decoder_loss(self, encoder_out, encoder_out_lens, text, text_lengths, stats, teacher=(None, None)):
        if self.decoder_teacher is None:
            loss, stats["acc"], stats["cer"], stats["wer"] = self._calc_att_loss(
                encoder_out, encoder_out_lens, text, text_lengths)
            stats["loss_att"] = loss.detach()
            return loss
        # ESPnet's attention loss (_calc_att_loss), keeping the decoder's output for the KL
        teacher_feats, teacher_lengths = teacher
        if teacher_feats is None:
            raise ValueError("model_conf decoder_teacher_weight > 0 reads the clean-target teacher: it needs the "
                             f"data '<cache>/{TEACHER}.scp,{TEACHER},kaldi_ark' (asr.sh stage 5 writes it)")
        ys_in, ys_out = add_sos_eos(text, self.sos, self.eos, self.ignore_id)
        ys_in_lens = text_lengths + 1
        decoder_out, _ = self.decoder(encoder_out, encoder_out_lens, ys_in, ys_in_lens)
        loss = self.criterion_att(decoder_out, ys_out)
        stats["acc"] = th_accuracy(decoder_out.view(-1, self.vocab_size), ys_out, ignore_label=self.ignore_id)
        stats["cer"], stats["wer"] = (None, None) if self.training or self.error_calculator is None else \
            self.error_calculator(decoder_out.argmax(dim=-1).cpu(), text.cpu())
        soft = self.decoder_teacher.soft_targets(teacher_feats[:, : int(teacher_lengths.max())].to(encoder_out),
                                                 teacher_lengths, ys_in, ys_in_lens)
        loss_teacher = decoder_teacher_kl(decoder_out, soft, ys_out, self.ignore_id)
        stats["loss_att"], stats["loss_decoder_teacher"] = loss.detach(), loss_teacher.detach()
        return loss + self.decoder_teacher_weight * loss_teacher

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        """ESPnet's CTC + attention losses on the output encoded with the batch's enrollment."""
        return _baseline_forward(self, speech, speech_lengths, text, text_lengths, kwargs)


class TargetSpeakerMaskCTCModel(TargetSpeakerMixin, MaskCTCModel):
    """ESPnet's Mask-CTC model with the enrollment (``model: maskctc``)."""

    def __init__(self, *args, spk_conditioner: Optional[torch.nn.Module] = None, activity_weight: float = 0.0,
                 teacher_weight: float = 0.0, teacher_form: str = "mse", teacher_only: bool = False,
                 train_autocast: str = "none", **kwargs):
        super().__init__(*args, **kwargs)
        self.spk_conditioner = spk_conditioner
        self.activity_weight = activity_weight
        self.set_teacher(teacher_weight, teacher_form, teacher_only)
        self.train_autocast = check_train_autocast(train_autocast)
        self._check_single_output_branch()
        self.fill_ids = {self.sos, self.eos, self.mask_token} | special_ids(
            self.token_list, kwargs.get("sym_blank", "<blank>"))

    def _decoder_loss(self, encoder_out, encoder_out_lens, text, text_lengths, stats, teacher=(None, None)):
        loss, stats["acc_mlm"] = self._calc_mlm_loss(encoder_out, encoder_out_lens, text, text_lengths)
        stats["loss_mlm"] = loss.detach()
        return loss

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        """ESPnet's CTC + masked-LM losses on the output encoded with the batch's enrollment."""
        return _baseline_forward(self, speech, speech_lengths, text, text_lengths, kwargs)


def _baseline_forward(model, speech, speech_lengths, text, text_lengths, batch):
    """An ESPnet baseline's losses (CTC, its decoder's ``_decoder_loss``, the activity and
    teacher losses) on the output encoded with the batch's enrollment; with ``teacher_only``
    the encoder's losses alone (no decoder pass)."""
    utt_ids = batch.get("utt_id")
    enrollment = Enrollment.from_batch(batch, utt_ids)
    text = text[:, : int(text_lengths.max())]
    stats, loss_ctc, loss_decoder = {}, None, None
    teacher = batch.get(TEACHER), batch.get(f"{TEACHER}_lengths")  # teacher_loss takes them out of batch
    with forward_autocast(model.train_autocast, speech):
        encoder_out, encoder_out_lens, states = model.encode_with_states(speech, speech_lengths, enrollment)
        loss_activity = model.activity_loss(states, batch, stats)
        loss_teacher = model.teacher_loss(states, batch, stats, utt_ids)
    if model.teacher_only:
        return _encoder_only(loss_teacher, loss_activity, stats, speech)
    with forward_autocast(model.train_autocast, speech):
        if model.ctc_weight != 0.0:
            if model.ctc_units is None:
                loss_ctc, stats["cer_ctc"] = model._calc_ctc_loss(encoder_out, encoder_out_lens, text, text_lengths)
            else:
                chars, char_lengths = model.ctc_units.targets(text, text_lengths)
                loss_ctc = model.ctc(encoder_out, encoder_out_lens, chars, char_lengths)
            stats["loss_ctc"] = loss_ctc.detach()
        if model.ctc_weight != 1.0:
            loss_decoder = model._decoder_loss(encoder_out, encoder_out_lens, text, text_lengths, stats, teacher)
    loss = _weighted(model.ctc_weight, loss_ctc, loss_decoder).float()
    for extra in (loss_activity, loss_teacher):
        if extra is not None:
            loss = loss + extra.float()
    stats["loss"] = loss.detach()
    return force_gatherable((loss, stats, speech.size(0)), loss.device)


def _encoder_only(loss_teacher, loss_activity, stats, speech):
    """Phase 1 (``teacher_only``): the teacher loss (+ the activity loss), no decoder pass."""
    loss = loss_teacher.float() + (0.0 if loss_activity is None else loss_activity.float())
    stats["loss"] = loss.detach()
    return force_gatherable((loss, stats, speech.size(0)), loss.device)
