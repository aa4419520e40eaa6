"""Target-speaker masked-diffusion ASR model (LLaDA-style SFT over an audio prompt).

The encoder stack (frontend, SpecAugment, normalisation, encoder) and the CTC head
come from ESPnet's ``ESPnetASRModel``; the enrollment reaches the encoder through
``TargetSpeakerMixin``; this class adds the masked-diffusion decoder trained with
LLaDA's scaled loss, and decoding through the plain-torch sampler of
``diffasr.diffusion``.
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from typeguard import typechecked

from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.postencoder.abs_postencoder import AbsPostEncoder
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.legacy.nets.pytorch_backend.nets_utils import th_accuracy
from espnet2.legacy.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from espnet2.torch_utils.device_funcs import force_gatherable

from diffasr.diffusion import (
    DeliberationOptions,
    DiffusionOptions,
    Generators,
    SamplerOutput,
    CanvasPolicy,
    best_candidates,
    build_canvas,
    clone_generator,
    commit_drafts,
    deliberate,
    forward_mask,
    generate,
    hypothesis_confidence,
    scaled_loss,
)
from diffasr.espnet2.conditioning import AbsSpeakerConditioner
from diffasr.espnet2.ctc_units import CTCUnits
from diffasr.espnet2.distillation import MAKE_IT, TEXT_DISTILL, distilled_targets
from diffasr.espnet2.length import LengthPredictor
from diffasr.espnet2.precision import check_train_autocast, forward_autocast
from diffasr.espnet2.enrollment import NO_ENROLLMENT, Enrollment
from diffasr.espnet2.target_speaker import TargetSpeakerMixin, special_ids



def _utterance_name(utt_ids: Optional[List[str]], index: int) -> str:
    """The utterance key when the trainer passed it, else its index in the batch."""
    if utt_ids is not None and index < len(utt_ids):
        return f"utterance '{utt_ids[index]}'"
    return f"utterance #{index} of the batch"


class DiffusionASRModel(TargetSpeakerMixin, ESPnetASRModel):
    """Encoder + speaker conditioning + masked-diffusion decoder (+ CTC, + AR auxiliary).

    Loss: ``ctc_weight * CTC + (1 - ctc_weight) * diffusion + ar_weight * AR
    + length_weight * length + activity_weight * target activity`` (the encoder's
    per-frame decision that the enrolled voice speaks, ``TargetSpeakerMixin.activity_loss``).
    ``train_autocast``: the forward pass's precision on CPU (``diffasr.espnet2.precision``).
    ``mask_time_power`` weights the drawn mask ratios towards 1 (``forward_mask``);
    ``self_draft``: that share of the utterances is trained on a canvas where the model's own
    most confident predictions fill part of the masks (``commit_drafts``), with a revision
    loss that takes every committed draft back to the clean token.
    ``distill_share``: in training, that share of the examples (drawn per example) has the
    AR system's output (data ``text_distill``, ``diffasr.espnet2.distillation``) in place of
    its reference, for every loss; validation reads the references.

    Canvas (``canvas``, ``canvas_length``, ``canvas_train_margin`` and its draw
    ``canvas_margin_draw``, ``canvas_rate``, ``canvas_decode_margin``): the
    ``CanvasPolicy`` of ``diffasr.diffusion.canvas`` (its modes are described there),
    filled with ``sym_end``.  ``dynamic`` sizes it at inference with the CTC head,
    ``length`` with a length head (``LengthPredictor``, trained with weight
    ``length_weight``) so that the decoder is trained on words rather than on end fill,
    ``duration`` from the audio alone (no first pass).

    ``ctc_units`` (characters) replaces the token list as CTC's output classes when the
    token list is too large for a CTC head (Whisper's); CTC hypotheses are turned into
    tokens through the tokenizer.
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        token_list: Union[Tuple[str, ...], List[str]],
        frontend: Optional[AbsFrontend],
        specaug: Optional[AbsSpecAug],
        normalize: Optional[AbsNormalize],
        preencoder: Optional[AbsPreEncoder],
        encoder: AbsEncoder,
        postencoder: Optional[AbsPostEncoder],
        decoder: AbsDecoder,
        ctc: CTC,
        spk_conditioner: Optional[AbsSpeakerConditioner] = None,
        ctc_units: Optional[CTCUnits] = None,
        joint_network: Optional[torch.nn.Module] = None,
        ctc_weight: float = 0.3,
        ar_weight: float = 0.0,
        interctc_weight: float = 0.0,
        ignore_id: int = -1,
        lsm_weight: float = 0.0,
        length_normalized_loss: bool = False,
        canvas: str = "dynamic",
        canvas_length: int = 64,
        canvas_train_margin: int = 4,
        canvas_rate: float = 5.0,
        canvas_margin_draw: str = "fixed",
        canvas_decode_margin: Optional[int] = None,
        length_weight: float = 0.0,
        activity_weight: float = 0.0,
        teacher_weight: float = 0.0,
        teacher_form: str = "mse",
        teacher_only: bool = False,
        train_autocast: str = "none",
        mask_eps: float = 1e-3,
        mask_time_power: float = 1.0,
        self_draft: float = 0.0,
        distill_share: float = 0.0,
        report_cer: bool = True,
        report_wer: bool = True,
        sym_space: str = "<space>",
        sym_blank: str = "<blank>",
        sym_mask: str = "<mask>",
        sym_end: str = "<sos/eos>",
        extract_feats_in_collect_stats: bool = True,
    ):
        try:
            canvas_policy = CanvasPolicy(canvas, canvas_length, canvas_train_margin, canvas_rate,
                                         canvas_margin_draw, canvas_decode_margin)
        except ValueError as e:
            raise ValueError(f"model_conf: {e}") from None
        if not 0.0 <= ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1) for a diffusion model, got {ctc_weight}")
        if canvas == "dynamic" and ctc_weight == 0.0:
            raise ValueError("canvas: dynamic predicts the canvas length with CTC: set ctc_weight > 0")
        if (canvas == "length") != (length_weight > 0.0):
            raise ValueError("canvas: length and length_weight > 0 go together (the length head sizes the canvas)")
        if ar_weight < 0.0:
            raise ValueError(f"ar_weight must be >= 0, got {ar_weight}")
        for symbol, option in ((sym_mask, "sym_mask"), (sym_end, "sym_end")):
            if symbol not in token_list:
                raise ValueError(f"{option} {symbol!r} is not in the token list (stage 2 adds it)")
        super().__init__(
            vocab_size=vocab_size,
            token_list=list(token_list),  # a copy: the caller's list is never touched
            frontend=frontend,
            specaug=specaug,
            normalize=normalize,
            preencoder=preencoder,
            encoder=encoder,
            postencoder=postencoder,
            decoder=decoder,
            ctc=ctc,
            joint_network=joint_network,
            ctc_weight=ctc_weight,
            interctc_weight=interctc_weight,
            ignore_id=ignore_id,
            lsm_weight=lsm_weight,
            length_normalized_loss=length_normalized_loss,
            report_cer=report_cer,
            report_wer=report_wer,
            sym_space=sym_space,
            sym_blank=sym_blank,
            sym_sos=sym_end,
            sym_eos=sym_end,
            extract_feats_in_collect_stats=extract_feats_in_collect_stats,
        )
        self.spk_conditioner = spk_conditioner
        self.activity_weight = activity_weight
        self.set_teacher(teacher_weight, teacher_form, teacher_only)
        self.train_autocast = check_train_autocast(train_autocast)
        self.ctc_units = ctc_units
        self.ctc_blank_id = ctc_units.blank_id if ctc_units is not None else self.blank_id
        self.mask_id = self.token_list.index(sym_mask)
        self.end_id = self.token_list.index(sym_end)
        # Tokens never written out: the canvas fill, the mask, and CTC's blank if listed.
        self.fill_ids = {self.end_id, self.mask_id} | special_ids(self.token_list, sym_blank)
        self.ar_weight = ar_weight
        self.canvas_policy = canvas_policy
        self.length_weight = length_weight
        self.length_predictor = None
        if length_weight > 0.0:
            self.length_predictor = LengthPredictor(encoder.output_size() if postencoder is None
                                                    else postencoder.output_size())
        self.mask_eps = mask_eps
        if mask_time_power < 1.0:
            raise ValueError(f"model_conf mask_time_power must be >= 1, got {mask_time_power}")
        self.mask_time_power = mask_time_power
        if not 0.0 <= self_draft <= 1.0:
            raise ValueError(f"model_conf self_draft must be in [0, 1], got {self_draft}")
        self.self_draft = self_draft
        if not 0.0 <= distill_share <= 1.0:
            raise ValueError(f"model_conf distill_share must be in [0, 1], got {distill_share}")
        self.distill_share = distill_share
        if ar_weight == 0.0:
            del self.criterion_att  # ESPnet's label-smoothed CE serves only the AR loss

    # ------------------------------------------------------------------ training
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        utt_id: Optional[List[str]] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Encoder + speaker conditioning + diffusion/CTC/AR losses (``_losses``), the
        forward pass in the precision of ``train_autocast``.

        Args:
            speech: [B, T(, C)]; speech_lengths: [B].
            text: [B, U] token ids, -1 padded; text_lengths: [B].
            kwargs: the enrollment's data (``Enrollment.from_batch``): ``enroll_embed``
                [B, E] (embedding) and/or ``enroll_speech`` [B, T'] with its lengths (audio).
        """
        with forward_autocast(self.train_autocast, speech):
            loss, stats = self._losses(speech, speech_lengths, text, text_lengths, utt_id, kwargs)
        loss = loss.float()
        stats["loss"] = loss.detach()
        return force_gatherable((loss.float(), stats, speech.size(0)), loss.device)

    def _losses(self, speech, speech_lengths, text, text_lengths, utt_id, kwargs):
        """The total loss and the statistics to report (``forward``'s arguments)."""
        stats = dict()
        text, text_lengths = self._training_targets(text, text_lengths, kwargs, stats)
        text = text[:, : int(text_lengths.max())]
        self._check_transcripts(text, text_lengths, utt_id)

        # 1. Encoder with the enrollment, its frame-level losses (phase 1: only those)
        encoder_out, encoder_out_lens, states = self.encode_with_states(
            speech, speech_lengths, Enrollment.from_batch(kwargs, utt_id))
        loss_activity = self.activity_loss(states, kwargs, stats)
        loss_teacher = self.teacher_loss(states, kwargs, stats, utt_id)
        if self.teacher_only:
            return loss_teacher + (0.0 if loss_activity is None else loss_activity), stats

        # 2. CTC branch on the conditioned frames (over tokens, or over their characters)
        loss_ctc = None
        if self.ctc_weight > 0.0:
            if self.ctc_units is None:
                loss_ctc, cer_ctc = self._calc_ctc_loss(encoder_out, encoder_out_lens, text, text_lengths)
                stats["cer_ctc"] = cer_ctc
            else:
                chars, char_lengths = self.ctc_units.targets(text, text_lengths)
                loss_ctc = self.ctc(encoder_out, encoder_out_lens, chars, char_lengths)
            stats["loss_ctc"] = loss_ctc.detach()

        # 3. Masked-diffusion branch: canvas, random masking, scaled CE on masked positions
        #    (only masked positions are projected onto the vocabulary: the loss reads no other)
        policy = self.canvas_policy
        seconds = self._input_seconds(speech, speech_lengths) if policy.length_source == "duration" else None
        canvas, canvas_lengths = policy.training_canvas(text, text_lengths, self.end_id, seconds,
                                                        self.max_hypothesis_length, utt_id)
        noisy, is_masked, p = forward_mask(canvas, canvas_lengths, self.mask_id, eps=self.mask_eps,
                                          time_power=self.mask_time_power)
        committed = torch.zeros_like(is_masked)
        if self.self_draft > 0.0:
            noisy, committed, is_masked, p = self._self_drafted(encoder_out, encoder_out_lens, canvas,
                                                                canvas_lengths, noisy, is_masked, p, stats)
        hidden = self.decoder.hidden(encoder_out, encoder_out_lens, noisy, canvas_lengths)
        predicted = is_masked | committed
        masked_logits = self.decoder.project(hidden[predicted]).float()
        token_ce = torch.zeros(canvas.shape, dtype=masked_logits.dtype, device=canvas.device)
        token_ce[predicted] = torch.nn.functional.cross_entropy(
            masked_logits, canvas[predicted], reduction="none"
        )
        loss_diff = scaled_loss(token_ce.masked_fill(committed, 0.0), p, canvas_lengths)
        if self.self_draft > 0.0:
            # the drafts' revision: every committed draft back to the clean token, per canvas position
            loss_revision = (token_ce * committed).sum(dim=1) / canvas_lengths.to(token_ce)
            stats["loss_revision"] = loss_revision.mean().detach()
            loss_diff = loss_diff + loss_revision.mean()
        masked_logits = masked_logits[is_masked[predicted]]
        stats["loss_diffusion"] = loss_diff.detach()
        if is_masked.any():
            stats["acc_masked"] = (masked_logits.argmax(dim=-1) == canvas[is_masked]).float().mean()

        # 4. Optional length head and autoregressive auxiliary (a causal pass of the same decoder)
        loss = (1.0 - self.ctc_weight) * loss_diff
        if loss_ctc is not None:
            loss = loss + self.ctc_weight * loss_ctc
        for extra in (loss_activity, loss_teacher):
            if extra is not None:
                loss = loss + extra
        if self.length_predictor is not None:
            loss_length, length_error = self.length_predictor.loss(encoder_out, encoder_out_lens, text_lengths)
            stats["loss_length"], stats["length_error"] = loss_length.detach(), length_error
            loss = loss + self.length_weight * loss_length
        if self.ar_weight > 0.0:
            if getattr(self.decoder, "shift", False):
                # A shifted decoder predicts position i from i - 1 (its prompt predicts the
                # first): the clean transcript + end, causally, is the AR pass it was made from.
                ys_out, ys_lens = build_canvas(text, text_lengths, self.end_id, self.end_id, margin=1)
                hidden = self.decoder.hidden(encoder_out, encoder_out_lens, ys_out, ys_lens, causal=True)
                ar_logits = self.decoder.project(hidden)
                inside = torch.arange(ys_out.size(1), device=ys_out.device) < ys_lens[:, None]
                ys_out = ys_out.masked_fill(~inside, self.ignore_id)
            else:
                ys_in, ys_out = add_sos_eos(text, self.sos, self.eos, self.ignore_id)
                ar_logits, _ = self.decoder(
                    encoder_out, encoder_out_lens, ys_in, text_lengths + 1, causal=True
                )
            loss_ar = self.criterion_att(ar_logits, ys_out)
            stats["loss_ar"] = loss_ar.detach()
            stats["acc_ar"] = th_accuracy(
                ar_logits.view(-1, self.vocab_size), ys_out, ignore_label=self.ignore_id
            )
            loss = loss + self.ar_weight * loss_ar

        return loss, stats

    def _training_targets(self, text, text_lengths, batch, stats):
        """The references, in training each replaced by the AR system's output with probability
        ``distill_share`` (``distilled_targets``); unchanged, and nothing drawn, at share 0 (and
        in phase 1, ``teacher_only``, which reads no transcript)."""
        if self.distill_share == 0.0 or not self.training or self.teacher_only:
            return text, text_lengths
        if TEXT_DISTILL not in batch:
            raise ValueError(f"model_conf distill_share {self.distill_share} trains on the AR system's outputs, "
                             f"but the batch has no {TEXT_DISTILL}: make them with {MAKE_IT} and add "
                             f"--train_data_path_and_name_and_type <dir>/text,{TEXT_DISTILL},text")
        text, text_lengths, chosen = distilled_targets(text, text_lengths, batch[TEXT_DISTILL],
                                                       batch[f"{TEXT_DISTILL}_lengths"], self.distill_share,
                                                       pad=self.ignore_id)
        stats["distilled"] = chosen.float().mean()
        return text, text_lengths

    def _self_drafted(self, encoder_out, encoder_out_lens, canvas, canvas_lengths, noisy, is_masked, p, stats):
        """``self_draft`` of the utterances on a canvas where the model's own most confident
        predictions fill a share (drawn in 0 .. 7/8) of their masked positions
        (``commit_drafts``); the others as masked.  Returns the canvas, the committed drafts,
        the positions still masked and their masking rate."""
        batch = canvas.size(0)
        with torch.no_grad():
            hidden = self.decoder.hidden(encoder_out, encoder_out_lens, noisy, canvas_lengths)
            logits = self.decoder.project(hidden[is_masked]).float()
            logits[:, self.mask_id] = float("-inf")  # a draft is a token, as the sampler's are
            confidence, tokens = logits.softmax(dim=-1).max(dim=-1)
        draft = torch.zeros_like(canvas)
        draft_confidence = torch.zeros(canvas.shape, device=canvas.device)
        draft[is_masked], draft_confidence[is_masked] = tokens, confidence
        drafted = torch.rand(batch, device=canvas.device) < self.self_draft
        share = torch.rand(batch, device=canvas.device) * 0.875 * drafted
        noisy, committed, still_masked = commit_drafts(noisy, is_masked, draft, draft_confidence, share)
        if committed.any():
            stats["acc_draft"] = (draft[committed] == canvas[committed]).float().mean()
        # the masking rate of what is left masked, for the 1/p weighting of the diffusion loss
        return noisy, committed, still_masked, (p * (1.0 - share)).clamp(min=self.mask_eps)

    def _check_transcripts(
        self, text: torch.Tensor, text_lengths: torch.Tensor, utt_ids: Optional[List[str]]
    ) -> None:
        # An empty transcript is a target-absent example (the enrolled voice is not in the
        # mixture): its canvas is all end fill, and CTC's target is all blank.
        inside = torch.arange(text.size(1), device=text.device) < text_lengths[:, None]
        bad = inside & ((text < 0) | (text >= self.vocab_size))
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{_utterance_name(utt_ids, row)} has token id {int(text[row, col])} at "
                f"position {col}, outside the token list of {self.vocab_size} entries"
            )

    def _input_seconds(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> torch.Tensor:
        """Each utterance's duration in seconds, for a canvas sized by the audio."""
        seconds_of = getattr(self.encoder, "input_seconds", None)
        if seconds_of is None:
            raise ValueError("canvas: duration needs an encoder that knows the duration of its input "
                             f"(encoder: whisper); {type(self.encoder).__name__} does not")
        return seconds_of(speech, speech_lengths)

    # ------------------------------------------------------------------ CTC first pass
    def _ctc_greedy_path(
        self, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Best CTC label per frame [B, T] and where it emits a unit (repeats merged, blanks dropped)."""
        best = self.ctc.argmax(encoder_out)
        previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=self.ctc_blank_id)
        inside = torch.arange(best.size(1), device=best.device) < encoder_out_lens[:, None]
        return best, inside & (best != self.ctc_blank_id) & (best != previous)

    def ctc_greedy(self, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor) -> List[List[int]]:
        """Token ids of each utterance's best CTC path (repeats merged, blanks dropped)."""
        best, emitted = self._ctc_greedy_path(encoder_out, encoder_out_lens)
        paths = [best[b][emitted[b]].tolist() for b in range(best.size(0))]
        if self.ctc_units is not None:
            return [self.ctc_units.tokens(path) for path in paths]
        return paths

    def ctc_lengths(self, encoder_out: torch.Tensor, encoder_out_lens: torch.Tensor) -> torch.Tensor:
        """Number of tokens in the greedy CTC path."""
        if self.ctc_units is not None:
            hyps = self.ctc_greedy(encoder_out, encoder_out_lens)
            return torch.tensor([len(h) for h in hyps], dtype=torch.long, device=encoder_out.device)
        return self._ctc_greedy_path(encoder_out, encoder_out_lens)[1].sum(dim=1)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def diffusion_decode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        enrollment: Enrollment = NO_ENROLLMENT,
        options: Optional[DiffusionOptions] = None,
        names: Optional[Sequence[str]] = None,
        generator: Generators = None,
    ) -> Tuple[List[List[int]], List[List[float]], SamplerOutput]:
        """Decode a batch with the masked-diffusion sampler.

        ``enrollment``: whose speech to transcribe (an ``Enrollment`` of the batch).
        ``options`` (default: ``DiffusionOptions()``); its canvas options default to the
        training values.  An utterance whose predicted canvas is longer than the canvas
        maximum is decoded at the maximum, with a warning naming it (``names``: the
        utterance keys).  Returns per utterance the token ids (``<sos/eos>``, ``<mask>``
        and ``<blank>`` fill removed) and the commit probability of each, plus the raw
        sampler output.  ``generator``: where random remasking and temperature sampling
        draw from (``diffasr.diffusion.sampler.uniform``): one ``torch.Generator`` for the
        batch or one per utterance (each of an utterance's ``candidates`` rows then draws
        from its own copy of it); None: torch's global generator.
        """
        options = options or DiffusionOptions()
        policy = self.canvas_policy.overridden(options.canvas, options.canvas_length, options.canvas_decode_margin)
        encoder_out, encoder_out_lens = self.encode(speech, speech_lengths, enrollment)
        predicted, seconds = None, None
        if policy.length_source == "length_head":
            if self.length_predictor is None:
                raise ValueError("canvas: length needs the length head, but this model has none")
            predicted = self.length_predictor.predict(encoder_out, encoder_out_lens)
        elif policy.length_source == "ctc":
            if self.ctc is None:
                raise ValueError("canvas: dynamic needs the CTC head, but this model has none")
            predicted = self.ctc_lengths(encoder_out, encoder_out_lens)
        elif policy.length_source == "duration":
            seconds = self._input_seconds(speech, speech_lengths)
        lengths = policy.decoding_lengths(encoder_out.size(0), predicted, seconds,
                                          self.max_hypothesis_length).to(encoder_out.device)
        for b, wanted in policy.cut_to_maximum(predicted, lengths) if predicted is not None else ():
            name = f"utterance '{names[b]}'" if names else f"utterance #{b} of the batch"
            logging.warning(f"{name}: its predicted canvas of {wanted} positions is longer "
                            f"than the canvas maximum {int(lengths[b])}; decoded at the maximum "
                            "(raise the decode's canvas_length, or segment the audio)")
        count = options.candidates
        per_utterance = generator is not None and not isinstance(generator, torch.Generator)
        if per_utterance and len(generator) != encoder_out.size(0):
            raise ValueError(f"{len(generator)} generators for a batch of {encoder_out.size(0)} utterances; "
                             "give one per utterance")
        if count > 1:  # each utterance's candidate lengths, as consecutive rows of one batch
            lengths = policy.candidate_lengths(lengths, count, self.max_hypothesis_length).reshape(-1)
            encoder_out = encoder_out.repeat_interleave(count, dim=0)
            encoder_out_lens = encoder_out_lens.repeat_interleave(count, dim=0)
            if per_utterance:
                generator = [clone_generator(g) for g in generator for _ in range(count)]
        width, steps = policy.schedule(int(lengths.max()), options.steps, options.block_length)
        positions = torch.arange(width, device=encoder_out.device)
        start = torch.where(positions < lengths[:, None], self.mask_id, self.end_id)

        def denoise(tokens: torch.Tensor) -> torch.Tensor:
            return self.decoder(encoder_out, encoder_out_lens, tokens, lengths)[0]

        out = generate(
            denoise, start, lengths, self.mask_id, steps,
            block_length=options.block_length, remasking=options.remasking,
            threshold=options.threshold, temperature=options.temperature, generator=generator,
            end_id=self.end_id, end_commit=options.end_commit,
        )
        out = best_candidates(out, count)
        return (*self._strip_fill(out, out.canvas_lengths), out)

    def _strip_fill(self, out: SamplerOutput, lengths: torch.Tensor) -> Tuple[List[List[int]], List[List[float]]]:
        """Token ids and confidences of each canvas, the fill tokens (``fill_ids``) removed."""
        fill = self.fill_ids
        token_ids, confidences, out.kept_positions = [], [], []
        for b in range(out.tokens.size(0)):
            keep = [i for i in range(int(lengths[b])) if int(out.tokens[b, i]) not in fill]
            token_ids.append([int(out.tokens[b, i]) for i in keep])
            confidences.append([float(out.confidence[b, i]) for i in keep])
            out.kept_positions.append(keep)
        return token_ids, confidences

    @torch.no_grad()
    def ctc_greedy_decode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor,
        enrollment: Enrollment = NO_ENROLLMENT,
    ) -> Tuple[List[List[int]], List[List[float]]]:
        """CTC greedy hypotheses (``fill_ids`` removed), each token scored by the diffusion decoder (one pass)."""
        if self.ctc is None:
            raise ValueError("CTC greedy decoding needs the CTC head, but this model has none")
        encoder_out, encoder_out_lens = self.encode(speech, speech_lengths, enrollment)
        hyps = self.ctc_greedy(encoder_out, encoder_out_lens)
        canvas, lengths = self._hypothesis_canvas(hyps, margin=0)
        confidence = hypothesis_confidence(
            lambda tokens: self.decoder(encoder_out, encoder_out_lens, tokens, lengths)[0],
            canvas, self.mask_id,
        )
        kept = [[k for k, i in enumerate(h) if i not in self.fill_ids] for h in hyps]
        return ([[h[k] for k in keep] for h, keep in zip(hyps, kept)],
                [[float(confidence[b, k]) for k in keep] for b, keep in enumerate(kept)])

    @property
    def max_hypothesis_length(self) -> int:
        """Longest canvas the decoder can hold (its position table)."""
        return self.decoder.max_positions

    def _hypothesis_canvas(self, hyps: List[List[int]], margin: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Hypotheses on a canvas with ``margin`` end-filled positions.

        An external hypothesis may be longer than the canvases seen in training
        (``canvas_length``); it is kept whole, up to the decoder's position table.
        """
        device = next(self.parameters()).device
        too_long = [len(h) for h in hyps if len(h) > self.max_hypothesis_length]
        if too_long:
            raise ValueError(f"a hypothesis of {too_long[0]} tokens is longer than the decoder's "
                             f"{self.max_hypothesis_length} positions")
        lengths = torch.tensor(
            [max(1, min(len(h) + margin, self.max_hypothesis_length)) for h in hyps], dtype=torch.long,
            device=device,
        )
        canvas = torch.full((len(hyps), int(lengths.max())), self.end_id, dtype=torch.long, device=device)
        for b, h in enumerate(hyps):
            h = h[: int(lengths[b])]
            if h:
                canvas[b, : len(h)] = torch.tensor(h, dtype=torch.long, device=device)
        return canvas, lengths

    @torch.no_grad()
    def deliberation_decode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        enrollment: Enrollment = NO_ENROLLMENT,
        hypotheses: Optional[List[List[int]]] = None,
        options: Optional[DeliberationOptions] = None,
        generator: Generators = None,
    ) -> Tuple[List[List[int]], List[List[float]], SamplerOutput]:
        """Revise first-pass hypotheses (token ids; None: this model's CTC greedy).

        Each hypothesis goes on a canvas with ``canvas_decode_margin`` end-filled positions
        (room for a missed word), part of it is masked (``masking``) and denoised in
        ``steps`` steps, over ``num_chunks`` chunks left to right.  The model scores
        the unmasked hypothesis once; ``confidence_temperature`` calibrates that
        score (``sigmoid(logit(p) / T)``, T fitted on dev) before
        ``confidence_guided`` masking compares it with ``deliberation_threshold``, and
        kept tokens report it as their confidence.  ``generator``: where random masking and
        the re-denoising draw from (one ``torch.Generator`` for the batch or one per
        utterance; None: torch's global generator).
        """
        options = options or DeliberationOptions()
        encoder_out, encoder_out_lens = self.encode(speech, speech_lengths, enrollment)
        if hypotheses is None:
            if self.ctc is None:
                raise ValueError("deliberating CTC hypotheses needs the CTC head, but this model has none")
            hypotheses = self.ctc_greedy(encoder_out, encoder_out_lens)
        if len(hypotheses) != encoder_out.size(0):
            raise ValueError(f"{len(hypotheses)} hypotheses for a batch of {encoder_out.size(0)}")
        margin = self.canvas_policy.overridden(margin=options.canvas_decode_margin).inference_margin
        canvas, lengths = self._hypothesis_canvas(hypotheses, margin)

        def denoise(tokens: torch.Tensor) -> torch.Tensor:
            return self.decoder(encoder_out, encoder_out_lens, tokens, lengths)[0]

        scored = hypothesis_confidence(denoise, canvas, self.mask_id).clamp(1e-6, 1 - 1e-6)
        calibrated = torch.sigmoid(torch.logit(scored) / options.confidence_temperature)
        out = deliberate(
            denoise, canvas, lengths, self.mask_id, options.steps, masking=options.masking,
            mask_ratio=options.mask_ratio, threshold=options.deliberation_threshold, confidence=calibrated,
            num_chunks=options.num_chunks, generator=generator,
        )
        out.num_denoise_calls += 1
        out.confidence = torch.where(out.is_remasked, out.confidence, calibrated)
        return (*self._strip_fill(out, lengths), out)
