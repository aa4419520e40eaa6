"""``test_real``: recordings of real people, from Debian packages, to check that training
keeps what Whisper knew about human speech (the embedded corpus is synthesized).

Sources (installed by ``tools/install.sh``; nothing is downloaded at run time):

- ``asterisk-core-sounds-en`` + ``asterisk-core-sounds-en-g722``: Asterisk's English
  prompts, recorded by the voice actor Allison Smith (CC-BY-SA-3.0), 16 kHz G.722, with
  their transcripts in ``core-sounds-en.txt.gz``.  Taken: the top-level prompts whose
  transcript is a plain sentence of at least ``MIN_WORDS`` words (no digits, keys or
  bracketed sounds, which a transcript spells one way and a recogniser another), of at
  most ``MAX_SECONDS``.
- ``pocketsphinx-testdata``: CMU Sphinx's test recordings with their transcripts: five
  utterances of a LibriVox reader (Sense and Sensibility, public domain) and five of
  playing cards read by another speaker (BSD).

Each utterance is an example of its own, enrolled with another recording of the same
person (``corpus.plan_heldout``), in test_clean's layout: nothing mixed in.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile as sf

from diffasr.data.corpus import SourceUtt
from diffasr.data.mixing import SAMPLE_RATE

REAL_SET = "test_real"
MIN_WORDS = 8  # sentences, not menu words
MAX_SECONDS = 20.0  # one window of Whisper (30 s) with room: a longer prompt is left out
ASTERISK_SPEAKER = "allison"


@dataclass(frozen=True)
class RealSource:
    """Where a package puts what ``test_real`` reads, relative to the file-system root."""
    package: str
    path: str


ASTERISK_AUDIO = RealSource("asterisk-core-sounds-en-g722", "usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXT = RealSource("asterisk-core-sounds-en", "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SPHINX_DATA = RealSource("pocketsphinx-testdata", "usr/share/pocketsphinx/test/data")
# (sub-directory, transcription file, speaker)
SPHINX_SETS = (("librivox", "transcription", "librivox"), ("cards", "cards.transcription", "cards"))


class RealSpeechMissing(FileNotFoundError):
    """A package that ``test_real`` reads is not installed."""


def normalize(text: str) -> str:
    """The corpus's transcript form: upper case, words and apostrophes, single spaces."""
    text = text.upper().replace("-", " ")
    return " ".join(re.sub(r"[^A-Z' ]", " ", text).split())


def _require(root: Path, source: RealSource) -> Path:
    path = root / source.path
    if not path.exists():
        raise RealSpeechMissing(
            f"{path} does not exist: {REAL_SET} (real human speech) reads it from the Debian package "
            f"'{source.package}' (tools/install.sh installs it: apt-get install {source.package}); "
            f"or build the recipe without the set (run.sh --skip_real true)")
    return path


def asterisk_prompts(transcripts: Path) -> Dict[str, str]:
    """The selected prompts, ``{name: transcript as written}``: top-level prompts whose
    transcript is a plain sentence of at least MIN_WORDS words."""
    prompts = {}
    with gzip.open(transcripts, "rt", encoding="utf-8") as f:
        for line in f:
            name, sep, text = line.partition(":")
            name, text = name.strip(), text.strip()
            if not sep or line.startswith(";") or "/" in name:
                continue
            if re.fullmatch(r"[A-Za-z ,.'!?-]+", text) and len(normalize(text).split()) >= MIN_WORDS:
                prompts[name] = text
    return prompts


def decode_g722(path: Path) -> np.ndarray:
    """A raw G.722 file (16 kHz wideband) as float32 samples (PyAV: libavcodec's decoder;
    neither soundfile nor sox reads G.722)."""
    import av

    with av.open(str(path), format="g722") as container:
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
    samples = np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)  # libavcodec's G.722: s16
    return samples.astype(np.float32) / 32768.0


def sphinx_transcripts(path: Path) -> List[Tuple[str, str]]:
    """``<s> words </s> (file id)`` lines: [(file id, words)]."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*<s>(.*)</s>\s*\((\S+)\)\s*", line)
        if not match:
            raise ValueError(f"{path}:{number}: not a '<s> words </s> (id)' line: {line!r}")
        rows.append((match.group(2), match.group(1)))
    return rows


def real_sources(root: Path, wav_dir: Path) -> Dict[str, SourceUtt]:
    """Every ``test_real`` utterance, its audio written to ``wav_dir`` as 16-kHz WAV."""
    root, wav_dir = Path(root), Path(wav_dir)
    audio_dir = _require(root, ASTERISK_AUDIO)
    transcripts = _require(root, ASTERISK_TEXT)
    sphinx = _require(root, SPHINX_DATA)
    wav_dir.mkdir(parents=True, exist_ok=True)
    sources: Dict[str, SourceUtt] = {}

    def add(spk: str, name: str, audio: np.ndarray, text: str, origin: Path) -> None:
        if len(audio) == 0:
            raise ValueError(f"{origin}: no audio")
        utt = f"{spk}-{re.sub(r'[^A-Za-z0-9]+', '_', name)}"
        path = wav_dir / f"{utt}.wav"
        sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        sources[utt] = SourceUtt(utt, spk, str(path.resolve()), normalize(text), len(audio))

    # (the transcript file lists a few prompts the package ships no audio for: those are left out)
    for name, text in sorted(asterisk_prompts(transcripts).items()):
        g722 = audio_dir / f"{name}.g722"
        if g722.is_file():
            audio = decode_g722(g722)
            if len(audio) <= MAX_SECONDS * SAMPLE_RATE:
                add(ASTERISK_SPEAKER, name, audio, text, g722)
    if not sources:
        raise RealSpeechMissing(f"{audio_dir} holds none of the prompts {transcripts} lists: "
                                f"reinstall {ASTERISK_AUDIO.package}")
    for subdir, transcription, spk in SPHINX_SETS:
        for file_id, text in sphinx_transcripts(sphinx / subdir / transcription):
            wav = sphinx / subdir / f"{file_id}.wav"
            audio, rate = sf.read(wav, dtype="float32")
            if rate != SAMPLE_RATE or audio.ndim != 1:
                raise ValueError(f"{wav}: {rate} Hz, {audio.ndim} channel(s); expected 16 kHz mono")
            add(spk, file_id, audio, text, wav)
    return sources
