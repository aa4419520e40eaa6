"""Plan, render and write the stage-1 data dirs (docs/DESIGN.md, "Data directories").

Both corpora (embedded and LibriSpeech) end here: a dict of clean source
utterances per split and a list of mixture plans per split. A plan holds every
random draw, so rendering is deterministic and can run in worker processes.
Everything is written under `<output_dir>/.stage1_tmp/` and renamed into place
only when all sets are complete and valid, so a failure leaves earlier outputs
as they were.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from diffasr.audio import MIN_ENROLLMENT_SECONDS
from diffasr.data import DataPrepError
from diffasr.data.mixing import (SAMPLE_RATE, MixSetting, colored_noise, fit_length, gain_for_ratio,
                                 loudness_gain, mix, mixture_length, power, read_audio)
from diffasr.datadir import TARGET_ACTIVITY as ACTIVITY
from diffasr.datadir import DataDirError, is_target_absent, validate_data_dir, write_jsonl, write_kv, write_spk2utt
from diffasr.fileio import write_text_atomic


SPLITS = ("train", "dev", "test")
TMP_NAME, OLD_NAME = ".stage1_tmp", ".stage1_old"
DONE_NAME = ".stage1_done.json"


@dataclass(frozen=True)
class SourceUtt:
    """One clean single-speaker utterance."""
    utt: str
    spk: str
    path: str  # absolute
    text: str
    num_samples: int


@dataclass
class InterfererPlan:
    utt: str
    offset: int  # samples after the target's start
    sir_db: Optional[float] = None  # drawn ratio, or
    gain: Optional[float] = None  # a given gain (LibriMix metadata)


@dataclass
class NoisePlan:
    kind: str  # "synthetic" (colored_noise from seed) or "file"
    snr_db: Optional[float] = None
    gain: Optional[float] = None
    seed: int = 0
    path: Optional[str] = None
    start: int = 0  # first sample used from the noise file


@dataclass(frozen=True)
class TargetRole:
    """One example made from a mixture: whose speech to transcribe in it.

    utt: the example's id (it starts with the enrolled speaker's id); enroll: the
    enrollment utterance; target: the source utterance in the mixture whose words are
    the transcript, or None when the enrolled voice is not in the mixture (target
    absent: an empty transcript).
    """
    utt: str
    enroll: str
    target: Optional[str]


@dataclass
class MixturePlan:
    """One mixture: ``target`` at the start, interferers at offsets, noise. ``roles``: the
    examples made from it (default: one, ``utt`` with ``target`` and ``enroll``)."""
    utt: str
    target: str
    enroll: str
    interferers: List[InterfererPlan] = field(default_factory=list)
    noise: NoisePlan = field(default_factory=lambda: NoisePlan("synthetic"))
    target_lufs: Optional[float] = None
    target_gain: Optional[float] = None
    roles: List[TargetRole] = field(default_factory=list)

    def examples(self) -> List[TargetRole]:
        return self.roles or [TargetRole(self.utt, self.enroll, self.target)]

    def talkers(self) -> List[str]:
        """The source utterances in the mixture, ``target`` first."""
        return [self.target] + [i.utt for i in self.interferers]


def group_by_speaker(sources: Dict[str, SourceUtt]) -> Dict[str, List[str]]:
    by_spk: Dict[str, List[str]] = {}
    for utt in sorted(sources):
        by_spk.setdefault(sources[utt].spk, []).append(utt)
    return by_spk


def long_enough(drawn: str, choices: Sequence[str], sources: Dict[str, SourceUtt]) -> str:
    """The drawn enrollment, or, where it is shorter than a recogniser takes one
    (``MIN_ENROLLMENT_SECONDS``: decoding would refuse the example), the longest of the choices.
    No draw of ``rng``'s is spent on it, so every other example stays as it was drawn."""
    if sources[drawn].num_samples >= MIN_ENROLLMENT_SECONDS * SAMPLE_RATE:
        return drawn
    return max(choices, key=lambda u: (sources[u].num_samples, u))


def other_utterance(by_spk: Dict[str, List[str]], sources: Dict[str, SourceUtt], spk: str, avoid: Iterable[str],
                    rng: np.random.Generator, where: str) -> str:
    """An utterance of ``spk`` not in ``avoid`` (an enrollment that is not heard in the mixture),
    long enough for one (``long_enough``)."""
    avoid = set(avoid)
    choices = [u for u in by_spk[spk] if u not in avoid]
    if not choices:
        raise DataPrepError(f"{where}: speaker {spk} has no other utterance for enrollment")
    return long_enough(choices[int(rng.integers(len(choices)))], choices, sources)


def talker_roles(plan: MixturePlan, sources: Dict[str, SourceUtt], by_spk: Dict[str, List[str]],
                 rng: np.random.Generator, where: str) -> List[TargetRole]:
    """Each talker of the mixture the target once: its own id (its utterance first, then
    the others'), an enrollment of its speaker that is not in the mixture."""
    talkers = plan.talkers()
    roles = [TargetRole(plan.utt, plan.enroll, plan.target)]
    for utt in talkers[1:]:
        others = [u for u in talkers if u != utt]
        roles.append(TargetRole("_".join([utt] + others),
                                other_utterance(by_spk, sources, sources[utt].spk, talkers, rng, where), utt))
    return roles


def add_absent_roles(plans: List[MixturePlan], sources: Dict[str, SourceUtt], share: float,
                     rng: np.random.Generator, split: str) -> None:
    """Give ``round(share * examples)`` mixtures, drawn at random, one more example each:
    the enrollment of a voice of the same split that is not in the mixture, and no target."""
    if share <= 0.0 or not plans:
        return
    by_spk = group_by_speaker(sources)
    present = sum(len(p.examples()) for p in plans)
    count = min(len(plans), round(share * present))
    for index in sorted(rng.choice(len(plans), size=count, replace=False)):
        plan = plans[index]
        heard = {sources[u].spk for u in plan.talkers()}
        absent = [s for s in sorted(by_spk) if s not in heard]
        if not absent:
            raise DataPrepError(f"split '{split}': target-absent examples need a speaker who is not "
                                f"in mixture {plan.utt}; the split has {len(by_spk)} speakers")
        spk = absent[int(rng.integers(len(absent)))]
        enroll = long_enough(by_spk[spk][int(rng.integers(len(by_spk[spk])))], by_spk[spk], sources)
        plan.roles = plan.examples() + [TargetRole(f"{spk}-absent_{plan.utt}", enroll, None)]


def _pair_up(utts: List[str], sources: Dict[str, SourceUtt], rng: np.random.Generator
             ) -> Dict[str, Tuple[str, bool]]:
    """Every utterance in one pair with an utterance of another speaker, both targets; an
    utterance left over gets a partner that is a target elsewhere (only it is the target)."""
    order = [utts[i] for i in rng.permutation(len(utts))]
    pairs: Dict[str, Tuple[str, bool]] = {}
    unpaired: List[str] = []
    for utt in order:
        mate = next((u for u in unpaired if sources[u].spk != sources[utt].spk), None)
        if mate is None:
            unpaired.append(utt)
        else:
            unpaired.remove(mate)
            pairs[mate] = (utt, True)
    for utt in unpaired:
        others = [u for u in order if sources[u].spk != sources[utt].spk]
        pairs[utt] = (others[int(rng.integers(len(others)))], False)
    return pairs


def plan_mixtures(sources: Dict[str, SourceUtt], n_mixtures: Optional[int], setting: MixSetting,
                  rng: np.random.Generator, noise_files: Sequence[Tuple[str, int]] = (),
                  split: str = "") -> List[MixturePlan]:
    """Draw mixtures: a target, 1-2 interferers of other speakers of the same split,
    SIR/SNR/loudness from `setting`, and an enrollment utterance of the target's
    speaker that is not the target.  With ``setting.every_talker_target`` each talker
    is the target of one example; ``setting.absent_share`` adds target-absent examples.

    n_mixtures None: every utterance is the target once (as LibriMix; with
    ``every_talker_target`` utterances are paired into mixtures whose two talkers are
    both targets); otherwise the targets cycle through shuffled utterances.
    noise_files: (path, num_samples) to draw noise from; empty for synthesized noise.
    """
    by_spk = group_by_speaker(sources)
    speakers = sorted(by_spk)
    eligible = [u for s in speakers if len(by_spk[s]) >= 2 for u in by_spk[s]]
    if len(speakers) < 2 or not eligible:
        raise DataPrepError(f"split '{split}': mixtures need at least 2 speakers and a speaker with "
                            f"2 utterances (enrollment); found {len(speakers)} speakers")
    partner: Dict[str, Tuple[str, bool]] = {}  # target -> (its one interferer, whether both are targets)
    if n_mixtures is None and setting.every_talker_target:
        partner = _pair_up(eligible, sources, rng)
        targets = list(partner)
    elif n_mixtures is None:
        targets = eligible
    else:
        targets = []
        while len(targets) < n_mixtures:
            targets.extend(eligible[i] for i in rng.permutation(len(eligible)))
        targets = targets[:n_mixtures]
    lo, hi = setting.n_interferers
    plans: List[MixturePlan] = []
    seen = set()
    for target in targets:
        spk = sources[target].spk
        others = [s for s in speakers if s != spk]
        for _attempt in range(100):  # redraw the rare exact repeat of a combination
            count = min(int(rng.integers(lo, hi + 1)), len(others))
            if target in partner:
                chosen = [partner[target][0]]
            else:
                chosen = []
                for i in rng.choice(len(others), size=count, replace=False):
                    spk_utts = by_spk[others[i]]
                    chosen.append(spk_utts[int(rng.integers(len(spk_utts)))])
            interferers = []
            for utt in chosen:
                room = max(0, sources[target].num_samples - sources[utt].num_samples)
                interferers.append(InterfererPlan(utt, int(rng.integers(room + 1)),
                                                  sir_db=float(rng.uniform(*setting.sir_db))))
            talkers = [target] + [i.utt for i in interferers]
            utt_id = "_".join(talkers)
            # every order of the talkers names an example when each is the target in turn
            ids = ({"_".join([u] + [o for o in talkers if o != u]) for u in talkers}
                   if setting.every_talker_target else {utt_id})
            if not ids & seen:
                break
        else:
            raise DataPrepError(f"split '{split}': cannot draw {len(targets)} distinct mixtures; "
                                "the split has too few utterances")
        seen |= ids
        enroll = other_utterance(by_spk, sources, spk, [target], rng, f"split '{split}'")
        snr = float(rng.uniform(*setting.snr_db))
        if noise_files:
            path, noise_len = noise_files[int(rng.integers(len(noise_files)))]
            length = mixture_length(sources[target].num_samples,
                                    [(sources[i.utt].num_samples, i.offset) for i in interferers])
            noise = NoisePlan("file", snr_db=snr, path=path, start=int(rng.integers(max(0, noise_len - length) + 1)))
        else:
            noise = NoisePlan("synthetic", snr_db=snr, seed=int(rng.integers(2 ** 31)))
        plan = MixturePlan(utt_id, target, enroll, interferers, noise,
                           target_lufs=float(rng.uniform(*setting.target_lufs)))
        if setting.every_talker_target:
            plan.roles = talker_roles(plan, sources, by_spk, rng, f"split '{split}'")
            if target in partner and not partner[target][1]:
                plan.roles = plan.roles[:1]  # its interferer is already the target of another pair
        plans.append(plan)
    add_absent_roles(plans, sources, setting.absent_share, rng, split)
    return plans


# ---- rendering (runs in worker processes; the sources arrive once via _init_worker)
_SOURCES: Dict[str, SourceUtt] = {}


def _init_worker(sources: Dict[str, SourceUtt]) -> None:
    global _SOURCES
    _SOURCES = sources


def _source_record(utt: str, gain: float) -> dict:
    src = _SOURCES[utt]
    return {"utt": utt, "spk": src.spk, "path": src.path, "text": src.text, "gain": gain}


def render(task: Tuple[MixturePlan, str, str, Optional[str], Optional[str]]) -> List[Tuple[dict, float]]:
    """Write one mixture (and, for a test split, the clean target of each example).

    Returns a (mixture.jsonl record, seconds) pair per example (``plan.examples()``);
    the examples of a mixture share its audio file.
    task: (plan, wav dir to write, wav dir in the final lists, same two for the clean copies).
    """
    plan, wav_dir, final_wav_dir, clean_dir, final_clean_dir = task
    target_src = _SOURCES[plan.target]
    target = read_audio(target_src.path)
    target_gain = (plan.target_gain if plan.target_gain is not None
                   else loudness_gain(target, plan.target_lufs, target_src.path))
    target_power = power(target) * target_gain ** 2
    interferers = []
    for item in plan.interferers:
        audio = read_audio(_SOURCES[item.utt].path)
        gain = item.gain if item.gain is not None else gain_for_ratio(target_power, power(audio), item.sir_db)
        interferers.append((audio, item.offset, gain))
    length = mixture_length(len(target), [(len(a), off) for a, off, _ in interferers])
    noise_info: dict = {"kind": plan.noise.kind, "path": plan.noise.path}
    if plan.noise.kind == "synthetic":
        noise, params = colored_noise(length, np.random.default_rng(plan.noise.seed))
        noise_info.update(params, seed=plan.noise.seed)
    else:
        noise = fit_length(read_audio(plan.noise.path, "noise"), length, plan.noise.start)
        noise_info["start_samples"] = plan.noise.start
    noise_power = power(noise)
    if noise_power == 0.0:
        raise DataPrepError(f"{plan.noise.path}: noise segment is silent")
    noise_gain = (plan.noise.gain if plan.noise.gain is not None
                  else gain_for_ratio(target_power, noise_power, plan.noise.snr_db))
    mixture, clean, scale = mix(target, target_gain, interferers, noise, noise_gain)

    name = f"{plan.utt}.wav"
    sf.write(os.path.join(wav_dir, name), mixture, SAMPLE_RATE, subtype="PCM_16")
    # Every talker as mixed: (utt, audio, offset in the mixture, gain before clipping).
    talkers = [(plan.target, target, 0, target_gain)] + [
        (item.utt, audio, offset, gain) for item, (audio, offset, gain) in zip(plan.interferers, interferers)]
    mixed_power = {utt: power(audio) * gain ** 2 for utt, audio, _, gain in talkers}
    results = []
    for role in plan.examples():
        # Ratios from the gains actually used (the clip scale cancels out).
        reference = mixed_power[role.target] if role.target is not None else target_power
        others = [t for t in talkers if t[0] != role.target]
        record = {
            "utt": role.utt,
            "path": os.path.join(final_wav_dir, name),
            "interferers": [
                dict(_source_record(utt, gain * scale), offset_samples=offset,
                     sir_db=10 * math.log10(reference / mixed_power[utt]))
                for utt, audio, offset, gain in others],
            "noise": dict(noise_info, gain=noise_gain * scale,
                          snr_db=10 * math.log10(reference / (noise_power * noise_gain ** 2))),
            "enroll": {"utt": role.enroll, "spk": _SOURCES[role.enroll].spk, "path": _SOURCES[role.enroll].path},
        }
        if role.target is None:  # target absent: the SIR/SNR are those of the first talker
            record["target"] = {"utt": None, "spk": _SOURCES[role.enroll].spk, "path": None, "text": "",
                                "gain": 0.0, "offset_samples": 0}
            record[ACTIVITY] = np.zeros((length // 160 + 1) // 2, dtype=np.float32)
        else:
            utt, audio, offset, gain = next(t for t in talkers if t[0] == role.target)
            record["target"] = dict(_source_record(utt, gain * scale), offset_samples=offset)
            record[ACTIVITY] = target_activity(audio, offset, gain * scale, length)
            if clean_dir is not None:
                alone = clean if offset == 0 and utt == plan.target else _placed(audio, offset, gain * scale, length)
                sf.write(os.path.join(clean_dir, f"{role.utt}.wav"), alone, SAMPLE_RATE, subtype="PCM_16")
                record["clean_path"] = os.path.join(final_clean_dir, f"{role.utt}.wav")
        results.append((record, length / SAMPLE_RATE))
    return results


FRAME_SAMPLES = 320  # Whisper's encoder frame (20 ms): the frames the activity labels are for
ACTIVE_DB = -30.0  # a frame within 30 dB of the talker's loudest frame is speech


def target_activity(audio: np.ndarray, offset: int, gain: float, length: int) -> np.ndarray:
    """1 for each 20-ms frame of the mixture in which the target speaks (its energy within
    ``ACTIVE_DB`` of its loudest frame), else 0: as many frames as the Whisper encoder gives
    the mixture. The other talkers do not matter: an overlapped frame holds the target's words."""
    frames = (length // 160 + 1) // 2
    placed = np.zeros(frames * FRAME_SAMPLES, dtype=np.float64)
    end = min(offset + len(audio), len(placed))
    placed[offset:end] = gain * audio[: end - offset]
    energy = np.square(placed).reshape(frames, FRAME_SAMPLES).mean(axis=1)
    peak = float(energy.max())
    return (energy > peak * 10 ** (ACTIVE_DB / 10)).astype(np.float32) if peak > 0 else np.zeros(frames, np.float32)


def plan_heldout(sources: Dict[str, SourceUtt], rng: np.random.Generator) -> List[TargetRole]:
    """``test_heldout``: each clean utterance an example of its own, enrolled with another
    utterance of its voice (drawn from ``rng``)."""
    by_spk = group_by_speaker(sources)
    return [TargetRole(utt, other_utterance(by_spk, sources, sources[utt].spk, [utt], rng, HELDOUT_SET), utt)
            for utt in sorted(sources)]


def render_heldout(role: TargetRole) -> Tuple[dict, float]:
    """The mixture.jsonl record of one ``test_heldout`` example (the clean utterance as
    synthesized, nothing mixed in: test_clean's layout) and its seconds."""
    audio = read_audio(_SOURCES[role.target].path)
    enroll = _SOURCES[role.enroll]
    record = {
        "utt": role.utt,
        "path": _SOURCES[role.target].path,
        "target": dict(_source_record(role.target, 1.0), offset_samples=0),
        "interferers": [],
        "noise": {"kind": "none", "path": None, "gain": 0.0, "snr_db": None},
        "enroll": {"utt": enroll.utt, "spk": enroll.spk, "path": enroll.path},
        ACTIVITY: target_activity(audio, 0, 1.0, len(audio)),
    }
    return record, len(audio) / SAMPLE_RATE


def _placed(audio: np.ndarray, offset: int, gain: float, length: int) -> np.ndarray:
    """``gain * audio`` at ``offset`` in ``length`` samples of silence."""
    out = np.zeros(length, dtype=np.float32)
    out[offset:offset + len(audio)] = gain * audio
    return out


def parallel_map(fn: Callable, tasks: Sequence, sources: Dict[str, SourceUtt], nj: int, desc: str) -> List:
    """fn over tasks in order, in `nj` processes, with a progress bar."""
    if nj <= 1 or len(tasks) <= 1:
        _init_worker(sources)
        return [fn(t) for t in tqdm(tasks, desc=desc, unit="utt", leave=False)]
    # forkserver: forking a process that already runs threads (tqdm's monitor, a
    # caller's) can deadlock; the server forks clean workers instead.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["diffasr.data.corpus", "diffasr.data.embedded"])
    with context.Pool(nj, initializer=_init_worker, initargs=(sources,)) as pool:
        return list(tqdm(pool.imap(fn, tasks, chunksize=8), total=len(tasks), desc=desc, unit="utt", leave=False))


# ---- writing
def write_source_set(data_dir: Path, sources: Dict[str, SourceUtt]) -> None:
    write_kv(data_dir / "wav.scp", {u: s.path for u, s in sources.items()})
    write_kv(data_dir / "text", {u: s.text for u, s in sources.items()})
    write_kv(data_dir / "utt2spk", {u: s.spk for u, s in sources.items()})
    write_kv(data_dir / "utt2dur", {u: f"{s.num_samples / SAMPLE_RATE:.3f}" for u, s in sources.items()})
    write_spk2utt(data_dir)


def _write_mixture_set(data_dir: Path, records: List[dict], durations: Dict[str, float],
                       final_dir: Path, path_key: str = "path") -> None:
    write_kv(data_dir / "wav.scp", {r["utt"]: r[path_key] for r in records})
    write_kv(data_dir / "text", {r["utt"]: r["target"]["text"] for r in records})
    write_kv(data_dir / "utt2spk", {r["utt"]: r["target"]["spk"] for r in records})
    write_kv(data_dir / "utt2dur", {r["utt"]: f"{durations[r['utt']]:.3f}" for r in records})
    write_kv(data_dir / "enroll.scp", {r["utt"]: r["enroll"]["path"] for r in records})
    write_jsonl(data_dir / "mixture.jsonl", [{k: v for k, v in r.items() if k not in ("path", "clean_path", ACTIVITY)}
                                             for r in records])
    write_target_activity(data_dir, {r["utt"]: r[ACTIVITY] for r in records}, final_dir)
    write_spk2utt(data_dir)


def write_target_activity(data_dir: Path, labels: Dict[str, np.ndarray], final_dir: Path) -> None:
    """``target_activity.{ark,scp}``: per example, 1 for each 20-ms frame in which the
    enrolled talker speaks (all 0 when it is absent): a training target for the
    conditioning's frame-level speaker decision (``model_conf activity_weight``)."""
    import kaldiio

    ark, scp = data_dir / f"{ACTIVITY}.ark", data_dir / f"{ACTIVITY}.scp"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for utt in sorted(labels):
            writer(utt, labels[utt])
    # the scp names the ark where it will be once the set is renamed into place
    scp.write_text(scp.read_text().replace(str(ark), str(final_dir / ark.name)))


def _clean_record(record: dict) -> dict:
    """test_clean's metadata: the same target and enrollment, nothing else mixed in."""
    return dict(record, path=record["clean_path"], interferers=[],
                noise={"kind": "none", "path": None, "gain": 0.0, "snr_db": None})


ABSENT_SET = "test_absent"
HELDOUT_SET = "test_heldout"


def set_names(with_absent: bool = False, with_heldout: bool = False) -> List[str]:
    """The sets stage 1 writes; ``test_absent`` only for a mix setting with target-absent
    examples, ``test_heldout`` only for the embedded corpus."""
    return (list(SPLITS) + ["test_clean"] + ([ABSENT_SET] if with_absent else [])
            + ([HELDOUT_SET] if with_heldout else []) + [f"sources_{s}" for s in SPLITS])


def written_set_names(output_dir: os.PathLike) -> List[str]:
    return set_names((Path(output_dir) / ABSENT_SET).is_dir(), (Path(output_dir) / HELDOUT_SET).is_dir())


def build_data_dirs(output_dir: os.PathLike, sources: Dict[str, Dict[str, SourceUtt]],
                    plans: Dict[str, List[MixturePlan]], nj: int,
                    heldout: Optional[Tuple[Dict[str, SourceUtt], List[TargetRole]]] = None) -> Dict[str, dict]:
    """Render every split and write all sets atomically; returns corpus statistics.

    heldout: the sources and examples of ``test_heldout`` (``plan_heldout``), if any."""
    output_dir = Path(output_dir).resolve()
    tmp_root = output_dir / TMP_NAME
    shutil.rmtree(tmp_root, ignore_errors=True)
    try:
        for split in SPLITS:
            wav_dir = tmp_root / split / "wav"
            wav_dir.mkdir(parents=True)
            clean_dir = final_clean = None
            if split == "test":
                clean_dir = tmp_root / "test_clean" / "wav"
                clean_dir.mkdir(parents=True)
                final_clean = str(output_dir / "test_clean" / "wav")
            tasks = [(p, str(wav_dir), str(output_dir / split / "wav"),
                      None if clean_dir is None else str(clean_dir), final_clean) for p in plans[split]]
            results = [pair for pairs in parallel_map(render, tasks, sources[split], nj, f"mixing {split}")
                       for pair in pairs]
            records = [r for r, _ in results]
            durations = {r["utt"]: d for r, d in results}
            if split == "test":
                # The target-absent examples are a set of their own: scored by how often
                # nothing is transcribed, not by WER.
                present = [r for r in records if not is_target_absent(r)]
                _write_mixture_set(tmp_root / split, present, durations, output_dir / split)
                _write_mixture_set(tmp_root / "test_clean", [_clean_record(r) for r in present], durations,
                                   output_dir / "test_clean")
                absent = [r for r in records if is_target_absent(r)]
                if absent:
                    _write_mixture_set(tmp_root / ABSENT_SET, absent, durations, output_dir / ABSENT_SET)
            else:
                _write_mixture_set(tmp_root / split, records, durations, output_dir / split)
            write_source_set(tmp_root / f"sources_{split}", sources[split])
        if heldout:
            heldout_sources, roles = heldout
            results = parallel_map(render_heldout, roles, heldout_sources, nj, f"writing {HELDOUT_SET}")
            _write_mixture_set(tmp_root / HELDOUT_SET, [r for r, _ in results], {r["utt"]: d for r, d in results},
                               output_dir / HELDOUT_SET)
        names = written_set_names(tmp_root)
        for name in names:
            validate_data_dir(tmp_root / name, check_paths=False)
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        raise
    for name in (ABSENT_SET, HELDOUT_SET):  # from an earlier run with another mix setting or corpus
        if (output_dir / name).is_dir():
            shutil.rmtree(output_dir / name)
    swap_into_place(output_dir, tmp_root, names)
    return corpus_stats(output_dir)


def swap_into_place(output_dir: Path, tmp_root: Path, names: Iterable[str]) -> None:
    """Replace output_dir/<name> by tmp_root/<name> for every set (a rename each)."""
    old_root = output_dir / OLD_NAME
    shutil.rmtree(old_root, ignore_errors=True)
    old_root.mkdir()
    (output_dir / DONE_NAME).unlink(missing_ok=True)
    for name in names:
        final = output_dir / name
        if final.exists():
            os.replace(final, old_root / name)
        os.replace(tmp_root / name, final)
    shutil.rmtree(old_root)
    shutil.rmtree(tmp_root)


def _read_kv_plain(path: Path) -> Dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split(" ", 1) for line in f)


def corpus_stats(output_dir: os.PathLike, names: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    """Hours, speakers and utterances of every set (default: the mixture sets), from utt2dur and utt2spk."""
    output_dir = Path(output_dir)
    stats = {}
    for name in names or written_set_names(output_dir):
        durations = _read_kv_plain(output_dir / name / "utt2dur")
        speakers = set(_read_kv_plain(output_dir / name / "utt2spk").values())
        stats[name] = {"utterances": len(durations), "speakers": len(speakers),
                       "hours": round(sum(float(d) for d in durations.values()) / 3600, 4)}
    return stats


def format_stats(stats: Dict[str, dict]) -> str:
    lines = [f"{'set':<15} {'utts':>7} {'spk':>5} {'hours':>8}"]
    lines += [f"{name:<15} {stats[name]['utterances']:>7} {stats[name]['speakers']:>5} {stats[name]['hours']:>8.3f}"
              for name in stats]
    return "\n".join(lines)


def write_done(output_dir: os.PathLike, options: dict, stats: Dict[str, dict]) -> None:
    """corpus_stats.json and the marker that lets a rerun with the same options skip."""
    output_dir = Path(output_dir)
    for name, content in (("corpus_stats.json", stats), (DONE_NAME, options)):
        write_text_atomic(output_dir / name, json.dumps(content, indent=1, sort_keys=True) + "\n")


def is_done(output_dir: os.PathLike, options: dict, names: Optional[Sequence[str]] = None) -> bool:
    """True when a previous run with the same options completed and its sets (default:
    the mixture sets) are valid."""
    output_dir = Path(output_dir)
    marker = output_dir / DONE_NAME
    try:
        if json.loads(marker.read_text(encoding="utf-8")) != json.loads(json.dumps(options)):
            return False
        for name in names or written_set_names(output_dir):
            validate_data_dir(output_dir / name)
    except (OSError, ValueError, DataDirError):
        return False
    return (output_dir / "corpus_stats.json").is_file()
