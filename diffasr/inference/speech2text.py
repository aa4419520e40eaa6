"""Speech2Text: one loaded model (diffusion, ESPnet AR or Mask-CTC) that decodes batches.

``model: diffusion`` decodes with the masked-diffusion sampler, ``model: espnet`` with
ESPnet's joint CTC/attention beam search and ``model: maskctc`` with ESPnet's Mask-CTC
inference. A diffusion model decodes in one of three modes (``decode_mode``):
``diffusion`` (denoise a fully masked canvas), ``deliberation`` (mask part of a
first-pass hypothesis, from ``deliberation_hyp`` or the model's own CTC greedy path,
and denoise it again) or ``ctc_greedy`` (the first pass alone).  The options of each
are declared once, in ``diffasr.inference.options``.

The ESPnet baselines are decoded with ESPnet's ``BeamSearch`` and ``MaskCTCInference``
here rather than through ``espnet2.bin.asr_inference.Speech2Text``: that class builds
its model with ESPnet's own ``ASRTask`` (which knows neither the enrollment nor the
offline Whisper encoder), and its tokenizer and token converter refuse the Whisper
token list (no ``<unk>``; ESPnet's ``whisper_en`` tokenizer needs an older
openai-whisper), so it cannot load the Whisper AR baseline.
"""

import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

import diffasr.espnet2  # noqa: F401  (first: it drops ESPnet's flash-attn import notice)
from espnet2.asr.maskctc_model import MaskCTCInference, MaskCTCModel
from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch
from espnet2.legacy.nets.beam_search import BeamSearch
from espnet2.legacy.nets.scorers.ctc import CTCPrefixScorer
from espnet2.legacy.nets.scorers.length_bonus import LengthBonus

from diffasr.diffusion import Generators
from diffasr.espnet2.enrollment import NO_ENROLLMENT, Enrollment
from diffasr.espnet2.model import DiffusionASRModel
from diffasr.espnet2.builder import (
    DEFAULT_MAX_AUDIO_SECONDS,
    build_model_from_file,
    build_text_tokenizer,
    build_token_id_converter,
)
from diffasr.inference.options import DecodeOptions

# Recognizer options that shape the loaded model and tokenizer: set when a Speech2Text is
# built, the same for every call.
LOAD_OPTIONS = ("dtype", "bpemodel", "token_type", "max_audio_seconds", "wise_ft_encoder", "wise_ft_decoder")


@dataclass
class Recognition:
    """One decoded utterance: text, its tokens and each token's confidence."""

    text: str
    tokens: List[str]
    token_ids: List[int]
    confidences: List[float]
    entropies: Optional[List[float]] = None  # diffusion sampler: entropy at commit (nats)
    flips: Optional[List[int]] = None  # diffusion sampler: prediction changes before commit
    num_remasked: Optional[int] = None  # deliberation: tokens re-denoised
    canvas_length: Optional[int] = None  # deliberation: canvas positions

    @classmethod
    def nothing(cls) -> "Recognition":
        """The answer for a target the presence gate did not find."""
        return cls(text="", tokens=[], token_ids=[], confidences=[])


class Speech2Text:
    """Batch speech (+ enrollment) to text, tokens and token confidences::

        s2t = Speech2Text("exp/asr/config.yaml", "exp/asr/valid.loss.best.pth", steps=8)
        results = s2t(speech, speech_lengths, Enrollment(embed=enroll_embed))
        results[0].text, results[0].confidences

    Decode options come as a ``DecodeOptions`` or as its flat keywords (the names of
    ``conf/decode/*.yaml``): they are the defaults of every call, and a call may give
    other ones (``options=``; not those of ``LOAD_OPTIONS``).  Nothing random carries
    over between calls: each call draws from generators seeded with its options' ``seed``
    (one per utterance), so that the same call gives the same result whatever was decoded
    before it or beside it.  ``config.yaml`` is read once, by ``build_model_from_file``
    (``diffasr.espnet2.builder``: only the classes it names are imported); the training options it holds are ``train_args``, and the
    sample rate, token list and tokenizer come from them.
    """

    def __init__(self, asr_train_config: str, asr_model_file: Optional[str] = None, device: str = "cpu",
                 options: Optional[DecodeOptions] = None, **flat_options):
        if options is not None and flat_options:
            raise TypeError("give decode options either as a DecodeOptions or as keywords, not both")
        self.options = options or DecodeOptions.from_flat(flat_options)
        recognizer = self.options.recognizer
        try:
            model, self.train_args = build_model_from_file(asr_train_config, asr_model_file, device,
                                                             wise_ft=recognizer.wise_ft())
        except RuntimeError as e:
            if "size mismatch" not in str(e):
                raise
            first = next(line.strip() for line in str(e).splitlines() if "size mismatch" in line)
            raise ValueError(f"{asr_model_file} does not fit the model that {asr_train_config} builds ({first}); "
                             "were its token list or sizes changed after training?") from None
        if recognizer.decode_mode != "diffusion" and not isinstance(model, DiffusionASRModel):
            raise ValueError(f"decode_mode {recognizer.decode_mode} needs a diffusion model; "
                             f"{asr_train_config} has model: {getattr(self.train_args, 'model', '?')}")
        self.model = model.to(dtype=getattr(torch, recognizer.dtype)).eval()
        self.device = device
        self.converter = build_token_id_converter(model.token_list)
        token_type = recognizer.token_type or self.train_args.token_type
        bpemodel = recognizer.bpemodel or getattr(self.train_args, "bpemodel", None)
        if token_type == "bpe" and bpemodel is None:
            raise ValueError("token_type bpe needs --bpemodel (none in the training config)")
        # The SentencePiece model is opened on first use: pin its path against a chdir.
        self.tokenizer = build_text_tokenizer(token_type, bpemodel and os.path.abspath(bpemodel))
        self._hypothesis_files: Dict[Tuple[str, str], Dict[str, List[int]]] = {}
        # The default options' first-pass hypotheses (None: the model's CTC greedy path).
        self.hypotheses = self._hypothesis_file(self.options)
        frontend_conf = getattr(self.train_args, "frontend_conf", None) or {}
        self.fs = int(frontend_conf.get("fs", 16000))
        max_audio_seconds = recognizer.max_audio_seconds
        if max_audio_seconds is None:
            max_audio_seconds = getattr(self.train_args, "max_audio_seconds", DEFAULT_MAX_AUDIO_SECONDS)
        # An encoder with a position table (Whisper's 30 s) sets a hard limit of its own.
        self.max_audio_seconds = min(max_audio_seconds, getattr(model.encoder, "max_seconds", float("inf")))
        self.beam_search, self.maskctc = None, None
        if isinstance(model, MaskCTCModel):
            self.maskctc = self._build_maskctc()
        elif not isinstance(model, DiffusionASRModel):
            self.beam_search = self._build_beam_search()
        else:
            self._check_diffusion(self.options)
            diffusion = self.options.diffusion
            policy = model.canvas_policy.overridden(diffusion.canvas, diffusion.canvas_length)
            if recognizer.decode_mode == "diffusion" and diffusion.block_length and policy.mode != "fixed":
                logging.info(f"canvas: {policy.mode} varies per batch: each is rounded up to whole blocks of "
                             f"{diffusion.block_length}, and steps {diffusion.steps} up to a multiple of its blocks")

    def _check_diffusion(self, options: DecodeOptions) -> None:
        diffusion = options.diffusion
        policy = self.model.canvas_policy.overridden(diffusion.canvas, diffusion.canvas_length)
        policy.check_candidates(diffusion.candidates)

    def call_options(self, options: Optional[DecodeOptions] = None) -> DecodeOptions:
        """The options of one call: ``options`` (checked against this model), or the defaults."""
        if options is None:
            return self.options
        if not isinstance(options, DecodeOptions):
            raise TypeError(f"options must be a DecodeOptions (DecodeOptions.from_flat reads keywords), "
                            f"got {type(options).__name__}")
        if options is self.options:
            return options
        fixed = [name for name in LOAD_OPTIONS
                 if getattr(options.recognizer, name) != getattr(self.options.recognizer, name)]
        if fixed:
            raise ValueError(f"the decode options {fixed} are set when the model is loaded; "
                             "build another Speech2Text to change them")
        decode_mode = options.recognizer.decode_mode
        if not isinstance(self.model, DiffusionASRModel):
            if decode_mode != "diffusion":
                raise ValueError(f"decode_mode {decode_mode} needs a diffusion model; this one has "
                                 f"model: {getattr(self.train_args, 'model', '?')}")
        else:
            self._check_diffusion(options)
        return options

    def generators(self, batch: int, options: Optional[DecodeOptions] = None) -> List[torch.Generator]:
        """Fresh random generators for a batch, one per utterance, seeded with the options' seed."""
        seed = (options or self.options).recognizer.seed
        return [torch.Generator(device=self.device).manual_seed(seed) for _ in range(batch)]

    def _build_maskctc(self, options: Optional[DecodeOptions] = None) -> MaskCTCInference:
        maskctc = (options or self.options).maskctc
        return MaskCTCInference(self.model, maskctc.maskctc_n_iterations, maskctc.maskctc_threshold_probability)

    def _build_beam_search(self, options: Optional[DecodeOptions] = None) -> BeamSearch:
        """ESPnet's joint CTC/attention search, set up as ``espnet2.bin.asr_inference`` does."""
        model, options = self.model, (options or self.options).beam_search
        ctc_weight = options.ctc_weight
        if model.ctc is None and ctc_weight > 0.0:
            logging.info(f"ctc_weight {ctc_weight} ignored: this model has no CTC head")
            ctc_weight = 0.0
        elif model.ctc_units is not None and ctc_weight > 0.0:
            # Its CTC writes characters, the search extends tokens: no prefix score to share.
            logging.info(f"ctc_weight {ctc_weight} ignored: this model's CTC head is over characters")
            ctc_weight = 0.0
        scorers = dict(decoder=model.decoder, length_bonus=LengthBonus(len(model.token_list)))
        weights = dict(decoder=1.0 - ctc_weight, length_bonus=options.penalty)
        if ctc_weight > 0.0:
            scorers["ctc"] = CTCPrefixScorer(ctc=model.ctc, eos=model.eos)
            weights["ctc"] = ctc_weight
        search = BeamSearch(
            beam_size=options.beam_size, weights=weights, scorers=scorers, sos=model.sos, eos=model.eos,
            vocab_size=len(model.token_list), token_list=model.token_list,
            pre_beam_score_key=None if ctc_weight == 1.0 else "full",
        )
        search.__class__ = BatchBeamSearch  # every scorer above is batch-capable
        return search.to(device=self.device, dtype=getattr(torch, self.options.recognizer.dtype)).eval()

    def read_hypotheses(self, path: str, hyp_type: str = "text") -> Dict[str, List[int]]:
        """First-pass hypotheses ``<utt> WORDS`` (or ``<utt> pieces`` for ``token``) as token ids.

        A piece outside the model's token list is an error naming the utterance and line,
        except SentencePiece's rendering of ``<unk>`` (``⁇``), which a first pass of a model
        with this token list writes for its unknown token: it is read back as ``<unk>``.
        """
        vocabulary = set(self.model.token_list)
        unknown_word = "\u2047" if "<unk>" in vocabulary else None  # how SentencePiece writes <unk>
        hypotheses = {}
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                fields = line.rstrip("\n").split(maxsplit=1)
                if not fields:
                    continue
                utt, words = fields[0], fields[1] if len(fields) > 1 else ""
                if utt in hypotheses:
                    raise ValueError(f"{path}:{number}: utterance {utt} appears twice")
                if hyp_type != "text":
                    pieces = words.split()
                elif unknown_word is not None and unknown_word in words:
                    pieces = []
                    for index, part in enumerate(words.split(unknown_word)):
                        pieces += (["<unk>"] if index else []) + (self.tokenizer.text2tokens(part.strip())
                                                                 if part.strip() else [])
                else:
                    pieces = self.tokenizer.text2tokens(words)
                unknown = [p for p in pieces if p not in vocabulary]
                if unknown:
                    raise ValueError(
                        f"{path}:{number}: the hypothesis of utterance {utt} has tokens outside the "
                        f"model's token list: {unknown[:5]}"
                    )
                hypotheses[utt] = self.converter.tokens2ids(pieces)
        return hypotheses

    def _hypothesis_file(self, options: DecodeOptions) -> Optional[Dict[str, List[int]]]:
        """The first-pass hypotheses that ``options`` deliberate (read once per file), or None
        (not deliberation, or the model's own CTC greedy path)."""
        deliberation = options.deliberation
        if options.recognizer.decode_mode != "deliberation" or not deliberation.external_hypotheses:
            return None
        source = (deliberation.deliberation_hyp, deliberation.deliberation_hyp_type)
        if source not in self._hypothesis_files:
            self._hypothesis_files[source] = self.read_hypotheses(*source)
        return self._hypothesis_files[source]

    def _hypotheses_for(self, keys: Optional[Sequence[str]],
                        options: Optional[DecodeOptions] = None) -> Optional[List[List[int]]]:
        hypotheses = self.hypotheses if options is None else self._hypothesis_file(options)
        if hypotheses is None:
            return None  # the model's own CTC greedy path
        if keys is None:
            raise ValueError("deliberating an external hypothesis file needs the utterance keys")
        missing = [k for k in keys if k not in hypotheses]
        if missing:
            raise ValueError(f"the deliberation hypothesis file has no line for utterance {missing[0]}")
        for key in keys:
            if len(hypotheses[key]) > self.model.max_hypothesis_length:
                raise ValueError(
                    f"the hypothesis of utterance {key} has {len(hypotheses[key])} tokens, more "
                    f"than the decoder's {self.model.max_hypothesis_length} positions"
                )
        return [hypotheses[k] for k in keys]

    @property
    def max_enrollment_seconds(self) -> float:
        """The longest enrollment the model reads (Whisper's position table, or the audio limit)."""
        return float(getattr(self.model.encoder, "max_seconds", self.max_audio_seconds))

    @torch.no_grad()
    def __call__(
        self,
        speech: torch.Tensor,
        speech_lengths: Optional[torch.Tensor] = None,
        enrollment: Enrollment = NO_ENROLLMENT,
        keys: Optional[Sequence[str]] = None,
        options: Optional[DecodeOptions] = None,
        generator: Generators = None,
    ) -> List[Recognition]:
        """Decode a batch: speech [B, T] (or [T]), lengths [B], and whose speech to
        transcribe (an ``Enrollment`` of the batch: embedding and/or audio or frames).
        The audio was checked where it entered (``diffasr.audio``: the API, the server,
        stage 6's ``check_inputs``), within ``max_audio_seconds``; it is not checked again.

        ``keys`` (utterance ids) name utterances in errors and select external
        deliberation hypotheses.  ``options``: this call's decode options (default: this
        object's).  ``generator``: where random remasking, temperature sampling and
        deliberation's random masking draw from: one ``torch.Generator`` for the whole
        batch, or one per utterance; default: a fresh one per utterance seeded with the
        options' ``seed``, so that an utterance's result depends neither on what was
        decoded before nor on the rest of its batch.
        """
        options = self.call_options(options)
        if speech.dim() == 1:
            speech = speech.unsqueeze(0)
        if speech_lengths is None:
            speech_lengths = torch.full((speech.size(0),), speech.size(1), dtype=torch.long)
        if generator is None:
            generator = self.generators(speech.size(0), options)
        dtype = next(self.model.parameters()).dtype
        speech = speech.to(self.device, dtype=dtype)
        speech_lengths = speech_lengths.to(self.device)
        enrollment = enrollment.to(self.device, dtype)

        decode_mode = options.recognizer.decode_mode
        if not isinstance(self.model, DiffusionASRModel):
            ids, confidences = self._espnet_decode(speech, speech_lengths, enrollment, options)
            return [self._result(i, c) for i, c in zip(ids, confidences)]
        if decode_mode == "ctc_greedy":
            ids, confidences = self.model.ctc_greedy_decode(speech, speech_lengths, enrollment)
            return [self._result(i, c) for i, c in zip(ids, confidences)]
        if decode_mode == "diffusion":
            ids, confidences, out = self.model.diffusion_decode(
                speech, speech_lengths, enrollment, options.diffusion, names=keys, generator=generator)
            return self._sampler_results(ids, confidences, out)
        ids, confidences, out = self.model.deliberation_decode(
            speech, speech_lengths, enrollment, hypotheses=self._hypotheses_for(keys, options),
            options=options.deliberation, generator=generator,
        )
        results = self._sampler_results(ids, confidences, out)
        remasked = out.is_remasked.sum(dim=1).tolist()
        for b, result in enumerate(results):
            result.num_remasked, result.canvas_length = int(remasked[b]), int(out.canvas_lengths[b])
        return results

    def _sampler_results(self, ids, confidences, out) -> List[Recognition]:
        """Recognitions with the sampler's per-token entropy and flips."""
        return [
            self._result(ids[b], confidences[b], entropies=out.entropy[b, positions].tolist(),
                         flips=[int(f) for f in out.flips[b, positions].tolist()])
            for b, positions in enumerate(out.kept_positions)
        ]

    def _espnet_decode(self, speech, speech_lengths, enrollment: Enrollment,
                       options: Optional[DecodeOptions] = None) -> Tuple[List[List[int]], List[List[float]]]:
        """Hypotheses of the ESPnet baselines, without the model's special tokens (``fill_ids``)."""
        options = options or self.options
        encoder_out, encoder_out_lens = self.model.encode(speech, speech_lengths, enrollment)
        beam = options.beam_search
        maskctc, search = self.maskctc, self.beam_search
        if maskctc is not None and options.maskctc != self.options.maskctc:
            maskctc = self._build_maskctc(options)
        if search is not None and (beam.beam_size, beam.ctc_weight, beam.penalty) != (
                self.options.beam_search.beam_size, self.options.beam_search.ctc_weight,
                self.options.beam_search.penalty):
            search = self._build_beam_search(options)
        all_ids, all_confidences = [], []
        for b in range(encoder_out.size(0)):
            frames = encoder_out[b, : encoder_out_lens[b]]
            if maskctc is not None:
                yseq = maskctc(frames).yseq
            else:
                yseq = search(x=frames, maxlenratio=beam.maxlenratio, minlenratio=beam.minlenratio)[0].yseq
            ids = [i for i in yseq.tolist() if i not in self.model.fill_ids]
            all_ids.append(ids)
            all_confidences.append(self._teacher_forced_confidence(frames, ids))
        return all_ids, all_confidences

    def _teacher_forced_confidence(self, frames: torch.Tensor, ids: List[int]) -> List[float]:
        """Decoder probability of each hypothesis token given the hypothesis context.

        AR decoder: given the left context; Mask-CTC's MLM: given all other tokens.
        """
        if not ids:
            return []
        hyp = torch.tensor([ids], device=frames.device)
        if self.maskctc is not None:
            ys_in, targets = hyp, hyp
        else:
            ys_in = torch.nn.functional.pad(hyp, (1, 0), value=self.model.sos)[:, :-1]
            targets = hyp
        logits, _ = self.model.decoder(
            frames.unsqueeze(0), torch.tensor([frames.size(0)], device=frames.device),
            ys_in, torch.tensor([ys_in.size(1)], device=frames.device),
        )
        probs = logits.float().softmax(dim=-1).gather(-1, targets.unsqueeze(-1))
        return probs.view(-1).tolist()

    def _result(self, ids: List[int], confidences: List[float], entropies: Optional[List[float]] = None,
                flips: Optional[List[int]] = None) -> Recognition:
        tokens = self.converter.ids2tokens(ids)
        return Recognition(text=self.tokenizer.tokens2text(tokens), tokens=list(tokens), token_ids=list(ids),
                           confidences=list(confidences), entropies=entropies, flips=flips)
