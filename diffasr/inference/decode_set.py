"""Decoding a whole data set (stage 6): batches from ESPnet's data loader through
Speech2Text, or long recordings through silero-vad segments, and the output files.

Writes, sorted by utterance, into the output dir:

- ``text``                 ``<utt> WORDS``
- ``token``                ``<utt> tokens``
- ``timing``               ``<utt> <decode_wall_seconds> <audio_seconds>``
- ``word_confidence.ctm``  ``<utt> 1 <word_index> 1 <WORD> <confidence>``
- ``remasked``             ``<utt> <tokens re-denoised> <canvas length>`` (deliberation only)
- ``token_uncertainty``    ``<utt> <index> <TOKEN> <probability> <entropy> <flips>`` (diffusion
                           sampler: commit probability, predictive entropy in nats, and how
                           often the position's prediction changed before it was committed)
- ``presence``             ``<utt> <presence score> <1: decoded | 0: target not found>`` (with
                           ``presence_gate``: ``diffasr.speaker.presence``)
"""

import logging
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import kaldiio
import numpy as np
import torch

import diffasr.espnet2  # noqa: F401  (first: it drops ESPnet's flash-attn import notice)
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

from diffasr.audio import DATA, CheckedAudio, Role, listed, read_audio
from diffasr.espnet2.enrollment import ENROLL_EMBED, ENROLL_SPEECH, Enrollment, prepare
from diffasr.scoring.uncertainty import words_with_confidence
from diffasr.speaker.presence import PresenceGate, check_window_shape, presence_score


from diffasr.inference.options import DecodeOptions
from diffasr.inference.speech2text import Recognition, Speech2Text


def check_inputs(data_path_and_name_and_type: Sequence[Tuple[str, str, str]], key_file: Optional[str],
                 speech2text: Speech2Text, long_form: bool = False) -> Dict[str, Dict[str, CheckedAudio]]:
    """Every utterance to decode has a line in every input, its audio is checked once
    (``diffasr.audio``: exists, format, whole, mono, ``fs`` Hz, length, finite; an enrollment
    also at least 1 s and not silent) and its embedding is finite; else an error naming the
    file and line.  ESPnet's loader would fail mid-set with a traceback, or decode NaN to
    nothing.  Returns the checked audio of each ``sound`` input by utterance (not held in
    memory).  The speech is held to the model's maximum unless ``long_form``; an enrollment
    over its maximum is cut in long form, refused otherwise (the loader reads it whole)."""
    from diffasr.datadir import read_kv

    speech = next((path for path, name, _ in data_path_and_name_and_type if name == "speech"), None)
    listing = key_file or speech
    keys = list(read_kv(listing)) if listing else []
    roles = {"speech": Role.recording() if long_form else Role.mixture(speech2text.max_audio_seconds),
             ENROLL_SPEECH: Role.enrollment(speech2text.max_enrollment_seconds, cut=long_form)}
    checked: Dict[str, Dict[str, CheckedAudio]] = {}
    for path, name, kind in data_path_and_name_and_type:
        table = read_kv(path)
        for lineno, key in enumerate(keys, 1):
            if key not in table:
                raise ValueError(f"{path}: no line for utterance '{key}' ({listing}:{lineno})")
        if kind == "sound":
            what = "enrollment audio" if name == ENROLL_SPEECH else "audio"
            checked[name] = {key: read_audio(table[key], roles.get(name, DATA), speech2text.fs,
                                             listed(path, key, what, table[key]), keep=False) for key in keys}
        elif kind == "kaldi_ark":
            vectors, wanted = kaldiio.load_scp(path), set(keys)
            for lineno, key in enumerate(table, 1):
                if key in wanted and not np.isfinite(np.asarray(vectors[key])).all():
                    raise ValueError(f"{path}:{lineno}: {name} of utterance '{key}' has NaN/inf values")
    return checked


def rotation_partners(utts: Sequence[str], utt2spk: str) -> Dict[str, str]:
    """For each utterance, another utterance by a different speaker whose enrollment it gets.

    Utterances are sorted; utterance ``i`` takes the first utterance from ``i + n // 2``
    onwards (cyclically) whose speaker differs: a deterministic "wrong speaker" control
    for target-speaker decoding.
    """
    speakers = {}
    with open(utt2spk, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{utt2spk}:{number}: expected '<utt> <spk>', got {line!r}")
            speakers[fields[0]] = fields[1]
    utts = sorted(utts)
    missing = [u for u in utts if u not in speakers]
    if missing:
        raise ValueError(f"{utt2spk} has no speaker for utterance {missing[0]!r}")
    n = len(utts)
    partners = {}
    for i, utt in enumerate(utts):
        for k in range(n):
            other = utts[(i + n // 2 + k) % n]
            if speakers[other] != speakers[utt]:
                partners[utt] = other
                break
        else:
            raise ValueError(f"every utterance has speaker {speakers[utt]!r}; cannot rotate enrollments")
    return partners


class PartnerEnrollment:
    """Replaces a batch's enrollment (embedding and/or audio) by its partners' (``override``):

    - ``rotate``: another speaker's utterance of the set (``rotation_partners``): the enrolled
      voice is in no mixture it is decoded with;
    - ``swap``: the example of the same mixture whose target is this one's interferer
      (``diffasr.datadir.swap_partners``): a model that selects gives the other talker's words.
    """

    def __init__(self, data_path_and_name_and_type: Sequence[Tuple[str, str, str]], override: str,
                 utt2spk: Optional[str] = None):
        from espnet2.fileio.sound_scp import SoundScpReader

        from diffasr.datadir import swap_partners

        sources = {name: (path, kind) for path, name, kind in data_path_and_name_and_type}
        self.readers = {}
        for name in (ENROLL_EMBED, ENROLL_SPEECH):
            if name in sources:
                path, kind = sources[name]
                self.readers[name] = SoundScpReader(path, dtype="float32") if kind == "sound" else kaldiio.load_scp(path)
        if not self.readers:
            raise ValueError(f"--enrollment_override {override} needs an enroll_embed or enroll_speech data option")
        if override == "rotate":
            if utt2spk is None:
                raise ValueError("--enrollment_override rotate needs --utt2spk")
            with open(sources["speech"][0], encoding="utf-8") as f:
                utts = [line.split(maxsplit=1)[0] for line in f if line.strip()]
            self.partners = rotation_partners(utts, utt2spk)
        elif override == "swap":
            self.partners = swap_partners(Path(sources["speech"][0]).parent)
        else:
            raise ValueError(f"--enrollment_override must be rotate, swap or none, got {override!r}")

    def __call__(self, keys: Sequence[str]) -> Enrollment:
        """The enrollment of the utterances ``keys`` taken from their partners."""
        others = [self.partners[k] for k in keys]
        embed_reader, speech_reader = self.readers.get(ENROLL_EMBED), self.readers.get(ENROLL_SPEECH)

        def one(utt: str) -> Enrollment:
            embed = None if embed_reader is None else torch.from_numpy(np.asarray(embed_reader[utt]))
            speech = None
            if speech_reader is not None:
                audio = speech_reader[utt]
                speech = torch.from_numpy(np.asarray(audio[1] if isinstance(audio, tuple) else audio, dtype=np.float32))
            return Enrollment.of_one(embed=embed, speech=speech)

        return Enrollment.stack([one(o) for o in others], keys)


class WindowPresence:
    """The presence gate over a set's window embeddings, computed once by stage 4
    (the decode reads cached encoder frames, not the audio they were made of)."""

    def __init__(self, gate: str, window_embed: str):
        self.gate = PresenceGate.load(gate)
        check_window_shape(self.gate, Path(window_embed).parent)
        self.path = window_embed
        self.windows = kaldiio.load_scp(window_embed)

    def scores(self, keys: Sequence[str], enrollment: Enrollment) -> list:
        if enrollment.embed is None:
            raise ValueError("--presence_gate compares the mixture with the enrollment's speaker embedding: "
                             "add <set>/enroll_embed.scp,enroll_embed,kaldi_ark to the data options")
        out = []
        for key, embed in zip(keys, enrollment.embed.float().cpu().numpy()):
            if key not in self.windows:
                raise ValueError(f"{self.path}: no window embeddings for utterance '{key}' (rerun stage 4)")
            out.append(presence_score(self.windows[key], embed))
        return out


def inference(
    output_dir: str,
    data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
    asr_train_config: str,
    asr_model_file: Optional[str],
    options: Optional[DecodeOptions] = None,
    key_file: Optional[str] = None,
    batch_size: int = 1,
    ngpu: int = 0,
    num_workers: int = 0,
    enrollment_override: Optional[str] = None,
    utt2spk: Optional[str] = None,
    long_form: bool = False,
    presence_gate: Optional[str] = None,
    window_embed: Optional[str] = None,
    replace_speech: Optional[Callable[[Sequence[str], torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> None:
    """Decode every utterance of the data options and write the output files.

    With ``presence_gate`` (a ``presence.yaml``) and the set's ``window_embed`` scp, an
    utterance whose enrolled voice the gate does not find in the mixture is not decoded and
    gets an empty hypothesis.  ``replace_speech(keys, speech, speech_lengths)``: the audio
    decoded in place of each batch's (of the same lengths), e.g. each example's clean target
    (``diffasr.inference.distillation``)."""
    if batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
    options = options or DecodeOptions()
    set_all_random_seed(options.recognizer.seed)
    device = "cuda" if ngpu > 0 else "cpu"
    speech2text = Speech2Text(asr_train_config, asr_model_file, device=device, options=options)
    checked = check_inputs(data_path_and_name_and_type, key_file, speech2text, long_form)
    if (presence_gate is None) != (window_embed is None):
        raise ValueError("--presence_gate and --window_embed go together")
    if long_form:
        if presence_gate is not None:
            raise ValueError("--long_form does not take --presence_gate: its recordings have no window "
                             "embeddings of their segments (the API, diffasr.bin.transcribe, gates each)")
        if enrollment_override is not None:
            raise ValueError("--long_form does not take --enrollment_override")
        if replace_speech is not None:
            raise ValueError("--long_form decodes the recordings themselves, not a replacement of their audio")
        results = long_form_inference(speech2text, data_path_and_name_and_type, checked, batch_size,
                                      Path(output_dir))
        write_outputs(Path(output_dir), results)
        logging.info(f"wrote {len(results)} recordings to {output_dir}")
        return

    override = None
    if enrollment_override is not None:
        override = PartnerEnrollment(data_path_and_name_and_type, enrollment_override, utt2spk)

    from diffasr.espnet2.task import DiffASRTask  # ESPnet's data pipeline (a heavy import: sets only)

    train_args = speech2text.train_args
    loader = DiffASRTask.build_streaming_iterator(
        data_path_and_name_and_type,
        dtype=options.recognizer.dtype,
        batch_size=batch_size,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=DiffASRTask.build_preprocess_fn(train_args, False),
        collate_fn=DiffASRTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=False,
        inference=True,
    )

    gate = None if presence_gate is None else WindowPresence(presence_gate, window_embed)
    results: Dict[str, Tuple[Recognition, float, float]] = {}
    presence: Dict[str, Tuple[float, bool]] = {}
    started = time.perf_counter()
    for keys, batch in loader:
        batch = to_device(batch, device)
        enrollment = Enrollment.from_batch(batch, keys) if override is None else override(keys)
        found = [True] * len(keys)
        if gate is not None:
            scores = gate.scores(keys, enrollment)
            found = [gate.gate.present(score) for score in scores]
            presence.update(zip(keys, zip(scores, found)))
        speech = batch["speech"]
        if replace_speech is not None:
            speech = replace_speech(keys, speech, batch["speech_lengths"]).to(speech)
        tic = time.perf_counter()
        # A batch with a found target is decoded whole; the others' hypotheses are dropped.
        recognitions = (speech2text(speech, batch["speech_lengths"], enrollment, keys)
                        if any(found) else [Recognition.nothing()] * len(keys))
        share = (time.perf_counter() - tic) / len(keys)  # batch time split evenly
        for key, recognition, samples, here in zip(keys, recognitions, batch["speech_lengths"].tolist(), found):
            if not here:
                recognition = Recognition.nothing()
                logging.info(f"{key}: the enrolled voice was not found (presence {presence[key][0]:.3f} < "
                             f"{gate.gate.threshold:.3f}): empty hypothesis")
            results[key] = (recognition, share, samples / speech2text.fs)
        logging.info(f"decoded {len(results)} utterances ({time.perf_counter() - started:.1f} s); "
                     f"{keys[0]}: {results[keys[0]][0].text}")
    write_outputs(Path(output_dir), results)
    if presence:
        with (Path(output_dir) / "presence").open("w", encoding="utf-8") as f:
            f.writelines(f"{k} {score:.4f} {int(here)}\n" for k, (score, here) in sorted(presence.items()))
    logging.info(f"wrote {len(results)} utterances to {output_dir}")


def long_form_inference(speech2text: Speech2Text, data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
                        checked: Dict[str, Dict[str, CheckedAudio]], batch_size: int,
                        output_dir: Path) -> Dict[str, Tuple[Recognition, float, float]]:
    """Each recording (``checked``: ``check_inputs``'s, by data name and utterance) decoded
    by the one long-form driver, ``TargetSpeakerASR.transcribe_long`` (split by silero-vad,
    decoded in segments); one Recognition per recording, and ``words.ctm`` with times from
    its start."""
    from diffasr.api import TargetSpeakerASR

    sources = {name: (path, kind) for path, name, kind in data_path_and_name_and_type}
    path, kind = sources.get("speech", (None, None))
    if kind != "sound":
        raise ValueError(f"--long_form reads the recordings themselves (speech of type sound, a wav.scp); "
                         f"got {path},speech,{kind}")
    if speech2text.hypotheses is not None:
        raise ValueError("--long_form cannot deliberate an external transcript: its words are not split "
                         "at the recording's pauses")
    if ENROLL_SPEECH in sources and sources[ENROLL_SPEECH][1] != "sound":
        raise ValueError("--long_form takes the enrollment audio (enroll.scp, type sound)")
    embeds = kaldiio.load_scp(sources[ENROLL_EMBED][0]) if ENROLL_EMBED in sources else None
    recordings, enrollments = checked["speech"], checked.get(ENROLL_SPEECH)
    asr = TargetSpeakerASR.from_speech2text(speech2text)
    results = {}
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "words.ctm").open("w", encoding="utf-8") as ctm:
        for key, recording in recordings.items():
            embed = None if embeds is None else embeds[key]
            enrolled = None
            if enrollments is not None:
                enrolled = Enrollment.from_audio(enrollments[key], speech2text, embed=embed)
            elif embed is not None:
                enrolled = prepare(speech2text.model, embed)
            result = asr.transcribe_long(recording, enrolled=enrolled, batch_size=batch_size)
            segments = [s for s in result.segments if s.tokens]
            tokens = [t for s in segments for t in s.tokens]
            recognition = Recognition(
                text=" ".join(s.text for s in segments), tokens=tokens,
                token_ids=speech2text.converter.tokens2ids(tokens),
                confidences=[c for s in segments for c in s.token_confidences],
            )
            results[key] = (recognition, result.decode_seconds, result.audio_seconds)
            ctm.writelines(line + "\n" for line in result.ctm(key))
            logging.info(f"{key}: {result.audio_seconds:.1f} s in {len(result.segments)} segments, "
                         f"RTFx {result.rtfx:.1f}: {recognition.text[:80]}")
    return results


def write_outputs(output_dir: Path, results: Dict[str, Tuple[Recognition, float, float]]) -> None:
    """Write text, token, timing, word_confidence.ctm (and remasked), sorted by utterance."""
    output_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted(results)
    if any(results[k][0].entropies is not None for k in keys):
        with (output_dir / "token_uncertainty").open("w", encoding="utf-8") as uncertainty:
            for key in keys:
                recognition = results[key][0]
                for index, token in enumerate(recognition.tokens):
                    uncertainty.write(
                        f"{key} {index} {token} {recognition.confidences[index]:.6f} "
                        f"{recognition.entropies[index]:.6f} {recognition.flips[index]}\n"
                    )
    if any(results[k][0].num_remasked is not None for k in keys):
        with (output_dir / "remasked").open("w", encoding="utf-8") as remasked:
            for key in keys:
                recognition = results[key][0]
                remasked.write(f"{key} {recognition.num_remasked} {recognition.canvas_length}\n")
    with (output_dir / "text").open("w", encoding="utf-8") as text, \
            (output_dir / "token").open("w", encoding="utf-8") as token, \
            (output_dir / "timing").open("w", encoding="utf-8") as timing, \
            (output_dir / "word_confidence.ctm").open("w", encoding="utf-8") as ctm:
        for key in keys:
            recognition, seconds, audio_seconds = results[key]
            text.write(f"{key} {recognition.text}".rstrip() + "\n")
            token.write(f"{key} {' '.join(recognition.tokens)}".rstrip() + "\n")
            timing.write(f"{key} {seconds:.6f} {audio_seconds:.3f}\n")
            words = words_with_confidence(recognition.tokens, recognition.confidences)
            for index, (word, confidence) in enumerate(words):
                ctm.write(f"{key} 1 {index} 1 {word} {confidence:.6f}\n")


