"""test_real: recordings of real people from Debian packages (diffasr/data/real_speech.py)."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffasr.bin import prepare_real_speech
from diffasr.data.real_speech import (ASTERISK_AUDIO, ASTERISK_TEXT, SPHINX_DATA, asterisk_prompts, decode_g722,
                                      normalize)
from diffasr.datadir import read_kv

RATE = 16000


def write_g722(path: Path, audio: np.ndarray) -> None:
    import av

    with av.open(str(path), "w", format="g722") as out:
        stream = out.add_stream("g722", rate=RATE)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def packages(tmp_path):
    """A file-system root laid out as the three packages install: two Asterisk prompts
    (and transcript lines the set must leave out), two LibriVox and two cards recordings."""
    root = tmp_path / "root"
    audio = root / ASTERISK_AUDIO.path
    audio.mkdir(parents=True)
    write_g722(audio / "vm-sorry.g722", tone(300, 1.5))
    write_g722(audio / "tt-weasels.g722", tone(500, 1.0))
    write_g722(audio / "digits-long.g722", tone(700, 1.0))  # a transcript with digits: left out
    (root / ASTERISK_TEXT.path).parent.mkdir(parents=True)
    with gzip.open(root / ASTERISK_TEXT.path, "wt") as f:
        f.write("; Core Asterisk Sounds in English\n\n"
                "vm-sorry: I'm sorry I did not understand your response, one more time-please.\n"
                "tt-weasels: Weasels have eaten our phone system, all of it today.\n"
                "digits-long: Please dial 1 2 3 4 5 6 7 8 now.\n"
                "digits/1: one\n"
                "agent-pass: Please enter your password followed by the pound key.\n")  # no audio shipped
    sphinx = root / SPHINX_DATA.path
    for subdir, transcription, lines in (
            ("librivox", "transcription", [("0870", "he was not an ill disposed young man"),
                                           ("0880", "he might even have been made amiable himself")]),
            ("cards", "cards.transcription", [("001", "ten of clubs"), ("002", "four queen of clubs")])):
        (sphinx / subdir).mkdir(parents=True)
        (sphinx / subdir / transcription).write_text("".join(f"<s> {text} </s> ({fid})\n" for fid, text in lines))
        for i, (fid, _) in enumerate(lines):
            sf.write(sphinx / subdir / f"{fid}.wav", tone(200 + 50 * i, 0.8), RATE, subtype="PCM_16")
    return root


def build(tmp_path, root, *extra):
    return prepare_real_speech.main(["--output_dir", str(tmp_path / "data"), "--corpus_dir",
                                     str(tmp_path / "real"), "--root", str(root), *extra])


def test_test_real_is_built_from_the_packages_with_their_transcripts(tmp_path, packages):
    assert build(tmp_path, packages) == 0
    data = tmp_path / "data/test_real"
    assert read_kv(data / "text") == {
        "allison-tt_weasels": "WEASELS HAVE EATEN OUR PHONE SYSTEM ALL OF IT TODAY",
        "allison-vm_sorry": "I'M SORRY I DID NOT UNDERSTAND YOUR RESPONSE ONE MORE TIME PLEASE",
        "cards-001": "TEN OF CLUBS", "cards-002": "FOUR QUEEN OF CLUBS",
        "librivox-0870": "HE WAS NOT AN ILL DISPOSED YOUNG MAN",
        "librivox-0880": "HE MIGHT EVEN HAVE BEEN MADE AMIABLE HIMSELF"}
    speakers = read_kv(data / "utt2spk")
    assert speakers == {utt: utt.split("-")[0] for utt in speakers}
    wavs, enrollments = read_kv(data / "wav.scp"), read_kv(data / "enroll.scp")
    for utt, enroll in enrollments.items():
        # enrolled with another recording of the same person
        owner = next(u for u, path in wavs.items() if path == enroll)
        assert owner != utt and speakers[owner] == speakers[utt]
    # the audio as the package holds it, 16 kHz
    audio, rate = sf.read(wavs["allison-vm_sorry"], dtype="float32")
    assert rate == RATE and np.allclose(audio, decode_g722(packages / ASTERISK_AUDIO.path / "vm-sorry.g722"),
                                        atol=1 / 32768)
    assert read_kv(data / "utt2dur")["allison-vm_sorry"] == "1.500"
    assert sf.read(wavs["cards-002"], dtype="float32")[0] == pytest.approx(
        sf.read(packages / SPHINX_DATA.path / "cards/002.wav", dtype="float32")[0], abs=1e-4)


def test_at_most_n_examples_per_person_still_enrolled_from_all_of_their_recordings(tmp_path, packages):
    assert build(tmp_path, packages, "--max_per_speaker", "1") == 0
    data = tmp_path / "data/test_real"
    assert sorted(read_kv(data / "utt2spk")) == ["allison-tt_weasels", "cards-001", "librivox-0870"]
    enroll = read_kv(data / "enroll.scp")
    assert Path(enroll["cards-001"]).name == "cards-002.wav"  # a recording outside the set


@pytest.mark.parametrize("package", [ASTERISK_AUDIO, ASTERISK_TEXT, SPHINX_DATA], ids=lambda s: s.package)
def test_a_missing_package_is_named_and_the_set_already_written_is_kept(tmp_path, packages, package, capsys):
    assert build(tmp_path, packages) == 0
    before = (tmp_path / "data/test_real/text").read_text()
    missing = packages / package.path
    missing.rename(missing.with_name(missing.name + ".gone"))
    assert build(tmp_path, packages) == 1
    err = capsys.readouterr().err
    assert f"Debian package '{package.package}'" in err and f"apt-get install {package.package}" in err
    assert "run.sh --skip_real true" in err
    assert (tmp_path / "data/test_real/text").read_text() == before


def test_prompt_selection_and_transcript_form():
    assert normalize("I'm sorry, that's not a valid extension.  Please try-again!") == \
        "I'M SORRY THAT'S NOT A VALID EXTENSION PLEASE TRY AGAIN"


INSTALLED = Path("/") / ASTERISK_TEXT.path


@pytest.mark.skipif(not INSTALLED.exists(), reason="the Debian packages of test_real are not installed")
def test_the_installed_packages_give_the_documented_set(tmp_path):
    prompts = asterisk_prompts(INSTALLED)
    assert prompts["vm-sorry"] == "I'm sorry I did not understand your response."
    assert build(tmp_path, Path("/")) == 0
    text = read_kv(tmp_path / "data/test_real/text")
    speakers = read_kv(tmp_path / "data/test_real/utt2spk")
    counts = {spk: list(speakers.values()).count(spk) for spk in set(speakers.values())}
    assert counts == {"allison": 84, "librivox": 5, "cards": 5}  # egs/librimix_target/asr1/README.md
    assert text["librivox-sense_and_sensibility_01_austen_64kb_0880"] == "HE WAS NOT AN ILL DISPOSED YOUNG MAN"
    assert text["allison-queue_youarenext"] == (
        "YOUR CALL IS NOW FIRST IN LINE AND WILL BE ANSWERED BY THE NEXT AVAILABLE REPRESENTATIVE")
