"""One-off target-speaker transcription: a mixture, an enrollment, a trained model.

With a packed model::

    from diffasr.api import TargetSpeakerASR
    asr = TargetSpeakerASR("exp/asr_diffusion_conformer/packed/asr_diffusion_conformer.zip")
    asr.transcribe("mixture.wav", enrollment="alice.wav").text  # 'HELLO WORLD'

The model is either a stage-8 zip (``espnet2.bin.pack``: the ASR model, its
tokenizer and statistics, and the speaker encoder) or an experiment dir of a
recipe (``exp/asr_*``; the speaker encoder is ``--spk_model_dir`` or the one
``exp/spk_*`` beside it).  Decoding options are those of ``conf/decode/*.yaml``.

Where the speaker encoder's dir holds stage 4's ``presence.yaml``, a mixture (or a long
recording's segment) in which it does not find the enrolled voice is not decoded and gets an
empty transcript (``diffasr.speaker.presence``); ``presence_gate=False`` turns that off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import torch
import yaml

from diffasr import longform
from diffasr.audio import CheckedAudio, Role, read_audio
from diffasr.espnet2.enrollment import Enrollment
from diffasr.inference import DecodeOptions, Recognition, Speech2Text
from diffasr.speaker.presence import PRESENCE_FILE, PresenceCheck, PresenceGate

logger = logging.getLogger(__name__)

# A path, samples at the model's rate, or audio already checked (``diffasr.audio.read_audio``).
Audio = Union[str, os.PathLike, np.ndarray, CheckedAudio]
# A call's decode options: a DecodeOptions, a mapping of the options it changes (flat names of
# conf/decode/*.yaml, e.g. {"steps": 4, "seed": 1}), or None: the model's own.
Options = Union[None, DecodeOptions, Mapping[str, Any]]
# Decode-config keys that belong to the batch loop, not to Speech2Text.
LOOP_OPTIONS = ("batch_size", "ngpu", "num_workers")


def load_decode_config(path: Optional[os.PathLike]) -> Dict[str, Any]:
    """Options of a ``conf/decode/*.yaml`` file for ``Speech2Text`` (checked against their
    declaration: a misspelt key is an error naming the file)."""
    if path is None:
        return {}
    with open(path, encoding="utf-8") as f:
        options = yaml.safe_load(f) or {}
    if not isinstance(options, dict):
        raise ValueError(f"{path}: a decode config is a mapping of options")
    options = {k: v for k, v in options.items() if k not in LOOP_OPTIONS}
    DecodeOptions.from_flat(options, str(path))
    return options


def _speaker_dirs(root: Path):
    """Directories below ``root`` holding a speaker encoder (config.yaml + model.pt)."""
    return sorted(p.parent for p in root.rglob("model.pt") if (p.parent / "config.yaml").is_file())


class TargetSpeakerASR:
    """Transcribe what the enrolled speaker says in a mixture.

    Args:
        model: a stage-8 zip or an experiment dir (``config.yaml`` + ``inference_model``).
        spk_model_dir: stage-3 speaker encoder dir; default: packed in the zip, or the
            only ``spk_*`` dir beside an experiment dir.
        inference_model: checkpoint inside an experiment dir.
        presence_gate: None: gate on the enrolled voice's presence where the speaker encoder's
            dir has a ``presence.yaml``; True: require it; False: never gate.
        device: "cpu" or "cuda".
        unpack_dir: where a zip is unpacked (default: a directory beside it).
        **decode_options: ``Speech2Text`` options (steps, decode_mode, ...): the defaults of
            every call; ``transcribe``, ``transcribe_long`` and ``decode`` take other ones
            per call (``options=``), and a call's randomness comes from its options' ``seed``
            alone (not from what was decoded before), so the model can serve several
            callers.
    """

    def __init__(
        self,
        model: os.PathLike,
        spk_model_dir: Optional[os.PathLike] = None,
        inference_model: str = "valid.loss.ave.pth",
        presence_gate: Optional[bool] = None,
        device: str = "cpu",
        unpack_dir: Optional[os.PathLike] = None,
        **decode_options,
    ):
        model = Path(model)
        if model.suffix == ".zip":
            config, checkpoint, packed_root = self._unpack(model, unpack_dir)
            search_root, recipe = packed_root, packed_root
        elif model.is_dir():
            config, checkpoint = self._experiment(model, inference_model)
            search_root, recipe = model.parent, model.resolve().parent.parent  # <recipe>/exp/<name>
        else:
            raise FileNotFoundError(f"{model}: neither a packed model (.zip) nor an experiment dir")
        # config.yaml names its files (token list, BPE model, statistics) relative to the
        # recipe (or the unpacked zip): load from there.
        with contextlib.chdir(recipe):
            speech2text = Speech2Text(str(config.resolve()), str(checkpoint.resolve()), device=device,
                                      **decode_options)
        self._use(speech2text)
        needs_embedding = getattr(self.speech2text.model, "spk_conditioner", None) is not None
        if presence_gate and not self._takes_enrollment:
            raise ValueError(f"{model} takes no speaker input: there is no enrolled voice to gate on")
        if needs_embedding or (presence_gate is not False and self._takes_enrollment):
            spk_dir = self._speaker_dir(spk_model_dir, search_root, model, required=needs_embedding or bool(presence_gate))
            gate_file = None if spk_dir is None else spk_dir / PRESENCE_FILE
            if presence_gate and not gate_file.is_file():
                raise FileNotFoundError(f"{gate_file}: missing; stage 4 chooses the presence gate on dev "
                                        "(diffasr.bin.spk_presence choose)")
            use_gate = presence_gate is not False and gate_file is not None and gate_file.is_file()
            if needs_embedding or use_gate:
                from diffasr.speaker.model import load_trained_encoder  # SpeechBrain: only when used

                self.speaker_encoder, spk_conf = load_trained_encoder(spk_dir, device)
                if spk_conf["sample_rate"] != self.fs:
                    raise ValueError(f"speaker encoder works at {spk_conf['sample_rate']} Hz, the ASR model at {self.fs} Hz")
            if use_gate:
                self.presence = PresenceCheck(PresenceGate.load(gate_file), self.speaker_encoder, self.fs)
                logger.info("presence gate %s: threshold %.3f", gate_file, self.presence.gate.threshold)

    @classmethod
    def from_speech2text(cls, speech2text: Speech2Text) -> "TargetSpeakerASR":
        """Around a loaded ``Speech2Text``, without a speaker encoder or presence gate (stage 6's
        long form: the enrollment embeddings are stage 4's)."""
        asr = cls.__new__(cls)
        asr._use(speech2text)
        return asr

    def _use(self, speech2text: Speech2Text) -> None:
        self.speech2text, self.fs = speech2text, speech2text.fs
        self._vad, self._vad_lock = None, threading.Lock()  # silero-vad, loaded on the first long recording
        self.speaker_encoder, self.presence = None, None
        model = speech2text.model
        self._takes_enrollment = getattr(model, "spk_conditioner", None) is not None or model.needs_enrollment_audio()

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _unpack(archive: Path, unpack_dir: Optional[os.PathLike]):
        from espnet2.main_funcs.pack_funcs import unpack

        if not archive.is_file():
            raise FileNotFoundError(f"{archive}: no such packed model")
        # Absolute: the model is loaded from inside this dir (chdir), where a relative path
        # to a file in it would be resolved twice.
        outdir = (Path(unpack_dir) if unpack_dir else archive.with_name(archive.stem + "_unpacked")).resolve()
        files = unpack(archive.resolve(), outdir)
        if "asr_train_config" not in files or "asr_model_file" not in files:
            raise ValueError(f"{archive}: not an ASR model packed by espnet2.bin.pack asr (stage 8)")
        return Path(files["asr_train_config"]), Path(files["asr_model_file"]), outdir

    @staticmethod
    def _experiment(exp_dir: Path, inference_model: str):
        config, checkpoint = exp_dir / "config.yaml", exp_dir / inference_model
        for path in (config, checkpoint):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (train the model with stage 5 first)")
        return config, checkpoint

    @staticmethod
    def _speaker_dir(spk_model_dir, search_root: Path, model: Path, required: bool) -> Optional[Path]:
        """The speaker encoder's dir: given, packed in the zip, or the only ``spk_*`` beside
        the experiment; None where it is not required and there is not exactly one."""
        if spk_model_dir is not None:
            return Path(spk_model_dir)
        pattern_dirs = [d for d in _speaker_dirs(search_root)
                        if model.suffix == ".zip" or d.name.startswith("spk_")]
        if len(pattern_dirs) == 1:
            return pattern_dirs[0]
        if required:
            raise ValueError(
                f"{model} needs a speaker encoder (speaker-conditioned, or presence_gate=True); pass "
                f"spk_model_dir (found {len(pattern_dirs)} speaker encoders under {search_root}: {pattern_dirs[:3]})"
            )
        return None

    # ------------------------------------------------------------------ use
    @property
    def max_audio_seconds(self) -> float:
        """The longest audio decoded in one piece (``max_audio_seconds``, Whisper's 30 s)."""
        return self.speech2text.max_audio_seconds

    @property
    def max_enrollment_seconds(self) -> float:
        """The longest enrollment the model reads (Whisper's position table, or the audio limit)."""
        return self.speech2text.max_enrollment_seconds

    def role(self, name: str) -> Role:
        """What this model takes as a ``mixture`` (decoded in one piece), a ``recording`` (any
        length, split at its pauses) or an ``enrollment``."""
        roles = dict(mixture=lambda: Role.mixture(self.max_audio_seconds), recording=Role.recording,
                     enrollment=lambda: Role.enrollment(self.max_enrollment_seconds))
        if name not in roles:
            raise ValueError(f"role must be one of {sorted(roles)}, got {name!r}")
        return roles[name]()

    def read(self, audio: Audio, role: str = "mixture") -> CheckedAudio:
        """``audio`` checked once for ``role`` (``diffasr.audio.read_audio``): a wav path (16 kHz
        mono; a recording's samples are read again block by block when decoded) or samples at
        the model's rate.  Audio checked already (for this role, or a mixture taken as a
        recording) is returned as it is."""
        if isinstance(audio, CheckedAudio):
            if audio.role != role and (audio.role, role) != ("mixture", "recording"):  # a caller's slip
                raise ValueError(f"{audio.name} was read as the {audio.role}, not as the {role}")
            return audio
        return read_audio(audio, self.role(role), self.fs, keep=role != "recording")

    @property
    def takes_enrollment(self) -> bool:
        """Whether the model is told whose speech to transcribe."""
        return self._takes_enrollment

    def enroll(self, enrollment: Audio, embed: Optional[np.ndarray] = None) -> Enrollment:
        """What the model needs of an enrollment, computed once (``Enrollment.from_audio``):
        the speaker embedding (``embed``, or the speaker encoder's) and/or (models that read
        the enrollment audio) the frozen encoder's frames."""
        if not self.takes_enrollment:
            raise ValueError("this model takes no speaker input; it needs no enrollment")
        return Enrollment.from_audio(enrollment, self.speech2text, self.speaker_encoder, embed)

    def resolve_options(self, options: Options = None) -> DecodeOptions:
        """The ``DecodeOptions`` of a call: ``options`` as given, the model's own with the
        changes of a mapping (checked: a wrong name or value is a ValueError), or (None) the
        model's own."""
        if options is None or isinstance(options, DecodeOptions):
            return self.speech2text.call_options(options)
        if not isinstance(options, Mapping):
            raise TypeError(f"options must be a DecodeOptions or a mapping of decode options, "
                            f"got {type(options).__name__}")
        current = self.speech2text.options
        return self.speech2text.call_options(DecodeOptions.from_flat(dict(current.flat(), **options), "request"))

    def decode(self, segments: List[np.ndarray],
               enrollment: Union[None, Enrollment, List[Enrollment]] = None,
               names: Optional[List[str]] = None, options: Options = None) -> List[Recognition]:
        """Decode a batch of sample arrays (each within the model's maximum duration),
        with one enrollment for all or one per segment, and ``options`` (see ``resolve_options``).
        With the presence gate, a segment in which the enrolled voice is not found is not
        decoded: its Recognition is empty."""
        options = self.resolve_options(options)
        if self.takes_enrollment and enrollment is None:
            raise ValueError("this model is speaker-conditioned: give an enrollment recording")
        if not self.takes_enrollment:
            return longform.decode_segments(self.speech2text, segments, None, names, options)
        enrollments = enrollment if isinstance(enrollment, list) else [enrollment] * len(segments)
        found = list(range(len(segments)))
        if self.presence is not None:
            found = []
            for i, (samples, enrolled) in enumerate(zip(segments, enrollments)):
                if enrolled.embed is None:
                    raise ValueError("the presence gate compares the mixture with the enrollment's speaker "
                                     "embedding, and this enrollment has none (enrolled without the speaker "
                                     "encoder?): enroll the speaker again")
                score = self.presence.score(samples, enrolled.embed[0].numpy())
                if self.presence.gate.present(score):
                    found.append(i)
                else:
                    logger.info("%s: the enrolled voice was not found (presence %.3f < %.3f)",
                                names[i] if names else f"segment {i}", score, self.presence.gate.threshold)
        out = [Recognition.nothing() for _ in segments]
        if found:
            decoded = longform.decode_segments(self.speech2text, [segments[i] for i in found],
                                               [enrollments[i] for i in found],
                                               [names[i] for i in found] if names else None, options)
            for i, recognition in zip(found, decoded):
                out[i] = recognition
        return out

    # Options a caller may change per request, and the modes a diffusion model decodes in.
    REQUEST_MODES = ("diffusion", "ctc_greedy")

    def check_decode_options(self, mode: Optional[str] = None, steps: Optional[int] = None,
                             block_length: Optional[int] = None) -> Dict[str, Any]:
        """A request's changes to the decode options (only those given), checked, or a ValueError."""
        from diffasr.espnet2.model import DiffusionASRModel

        model, current = self.speech2text.model, self.speech2text.options
        given = {k: v for k, v in dict(decode_mode=mode, steps=steps, block_length=block_length).items()
                 if v is not None}
        if not isinstance(model, DiffusionASRModel):
            if given:
                raise ValueError(f"this is an autoregressive model (beam search); the options "
                                 f"{sorted(given)} are for diffusion models")
            return given
        if mode is not None and mode not in self.REQUEST_MODES:
            raise ValueError(f"mode must be one of {self.REQUEST_MODES}, got {mode!r}")
        if mode == "ctc_greedy" and model.ctc is None:
            raise ValueError("mode ctc_greedy needs a CTC head; this model has none")
        policy = model.canvas_policy.overridden(current.diffusion.canvas, current.diffusion.canvas_length)
        policy.check_request(current.diffusion.steps if steps is None else steps, block_length,
                             model.max_hypothesis_length)
        DecodeOptions.from_flat(dict(current.flat(), **given), "request")
        return given

    def transcribe_long(
        self,
        recording: Audio,
        enrollment: Optional[Audio] = None,
        enrolled: Optional[Enrollment] = None,
        batch_size: int = 8,
        vad_options: Optional[longform.VADOptions] = None,
        progress: bool = False,
        whole: Optional[bool] = False,
        max_batch_seconds: float = 40.0,
        options: Options = None,
        decode_batch: Optional[longform.DecodeBatch] = None,
    ) -> longform.LongFormResult:
        """Transcribe a recording of any length: silero-vad segments decoded in batches.

        The one long-form driver (the CLI, the server and stage 6 call it).  A path is
        checked once and read in blocks (16 kHz mono, as the model); an array is taken at
        the model's rate.  The enrollment is computed once for the whole recording.
        ``whole``: decode the recording as one segment, without VAD (it must fit the model's
        maximum); None: so when it fits, else segmented.  ``options``: the decode options
        (see ``resolve_options``; default: the model's own).  ``decode_batch``: how a list
        of segments is decoded (the server's batching queue, which carries the enrollment and
        options; default: ``decode`` with ``enrolled`` and ``options``).
        """
        if decode_batch is None:
            options = self.resolve_options(options)
            if enrolled is None and enrollment is not None:
                enrolled = self.enroll(enrollment)
            decode_batch = lambda segments: self.decode(segments, enrolled, options=options)  # noqa: E731
        checked = self.read(recording, "mixture" if whole else "recording")
        if whole is None:
            whole = checked.seconds <= self.max_audio_seconds
            if not whole:
                logger.info(f"{checked.name}: {checked.seconds:.1f} s, longer than the model's "
                            f"{self.max_audio_seconds:g} s: segmenting it with silero-vad")
        if whole:
            return longform.transcribe_long(checked, decode_batch, whole=True)
        if self.fs != longform.VAD_RATE:
            raise ValueError(f"long-form decoding runs silero-vad at {longform.VAD_RATE} Hz; "
                             f"this model takes {self.fs} Hz")
        vad = vad_options or longform.VADOptions()
        if vad.max_segment > self.max_audio_seconds:  # the one place a segment is held to the model
            vad = dataclasses.replace(vad, max_segment=self.max_audio_seconds)
        return longform.transcribe_long(
            checked, decode_batch, self.speech_activity(), vad,
            batch_size=batch_size, progress=progress, max_batch_seconds=max_batch_seconds,
        )

    def speech_activity(self) -> longform.SpeechActivity:
        """silero-vad, loaded once (on the first long recording), shared by every caller."""
        with self._vad_lock:
            if self._vad is None:
                self._vad = longform.SpeechActivity()
            return self._vad

    def transcribe(
        self,
        mixture: Audio,
        enrollment: Optional[Audio] = None,
        enroll_embed: Optional[np.ndarray] = None,
        options: Options = None,
    ) -> Recognition:
        """Text (with tokens and confidences) of the enrolled speaker in ``mixture``.

        Give the enrollment as audio (``enrollment``) or, for a model conditioned on a
        speaker embedding only, as a ready embedding.  Audio longer than the model's
        limit is refused (``transcribe_long`` takes it).  ``options``: the decode options
        (a ``DecodeOptions`` or a mapping of the options changed, e.g. ``{"seed": 1}``;
        default: the model's own).
        """
        options = self.resolve_options(options)
        speech = self.read(mixture, "mixture")
        name = str(mixture) if isinstance(mixture, (str, os.PathLike)) else "the mixture"
        enrolled = None
        if not self.takes_enrollment:
            if enrollment is not None:
                self.read(enrollment, "enrollment")  # a bad file is an error
                logger.warning("this model takes no speaker input: the enrollment is ignored")
        elif enrollment is not None:
            enrolled = self.enroll(enrollment, enroll_embed)
        elif enroll_embed is not None and not self.speech2text.model.needs_enrollment_audio():
            enrolled = Enrollment.of_one(embed=torch.as_tensor(np.asarray(enroll_embed, dtype=np.float32)))
        else:
            raise ValueError("this model is speaker-conditioned: give an enrollment recording")
        return self.decode([speech.samples()], enrolled, [name], options)[0]
