"""Kaldi-style data directories: read, write, validate and fix.

A data dir holds `key value...` text files sorted by key (see docs/DESIGN.md).
Every reader reports the file and line number of a malformed line, so a user can
find it. Writers go through a temporary file and `os.replace`, so an interrupted
stage never leaves a half-written list behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from diffasr.fileio import write_text_atomic

# Files keyed by utterance id that, when present, must cover exactly the ids of wav.scp.
UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2dur", "enroll.scp", "enroll_embed.scp")
# Files whose value is a path that must exist.
PATH_FILES = ("wav.scp", "enroll.scp")


class DataDirError(ValueError):
    """A data directory is inconsistent; the message names the file and line."""


def read_kv(path: os.PathLike, allow_empty_value: bool = False) -> Dict[str, str]:
    """Read a `key value` file into an ordered dict, checking every line.

    >>> # data/test/text: "spk1-0001 HELLO WORLD" -> {"spk1-0001": "HELLO WORLD"}
    """
    path = Path(path)
    out: Dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        lineno = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataDirError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            raise DataDirError(f"{path}:{lineno}: empty line")
        key, _, value = line.partition(" ")
        value = value.strip()
        if not value and not allow_empty_value:
            raise DataDirError(f"{path}:{lineno}: no value for key '{key}'")
        if key in out:
            raise DataDirError(f"{path}:{lineno}: duplicate key '{key}'")
        out[key] = value
    return out


def write_kv(path: os.PathLike, items: Mapping[str, object] | Iterable[Tuple[str, object]]) -> None:
    """Write `key value` lines sorted by key (C-locale order), atomically."""
    pairs = items.items() if isinstance(items, Mapping) else items
    lines = sorted((str(k), str(v)) for k, v in pairs)
    keys = [k for k, _ in lines]
    if len(set(keys)) != len(keys):
        dup = next(k for i, k in enumerate(keys[1:]) if k == keys[i])
        raise DataDirError(f"{path}: duplicate key '{dup}' while writing")
    write_text_atomic(path, "".join(f"{k} {v}".rstrip(" ") + "\n" for k, v in lines))


def write_jsonl(path: os.PathLike, records: Iterable[dict], key: str = "utt") -> None:
    """Write JSON lines sorted by `key`, atomically."""
    records = sorted(records, key=lambda r: r[key])
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def read_jsonl(path: os.PathLike, key: str = "utt") -> Dict[str, dict]:
    path = Path(path)
    out: Dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataDirError(f"{path}:{lineno}: invalid JSON ({e})") from None
            if key not in record:
                raise DataDirError(f"{path}:{lineno}: no '{key}' field")
            out[record[key]] = record
    return out


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> Dict[str, List[str]]:
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return spk2utt


def write_spk2utt(data_dir: os.PathLike) -> None:
    """data_dir/spk2utt from data_dir/utt2spk (Kaldi's utt2spk_to_spk2utt.pl)."""
    data_dir = Path(data_dir)
    spk2utt = spk2utt_from_utt2spk(read_kv(data_dir / "utt2spk"))
    write_kv(data_dir / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})


# Stage 1's per-frame labels of whether the enrolled talker speaks (target_activity.{ark,scp});
# also their data name in training.
TARGET_ACTIVITY = "target_activity"


def is_target_absent(record: Optional[dict]) -> bool:
    """A mixture.jsonl record whose enrolled voice is not in the mixture (its transcript is empty)."""
    return bool(record) and isinstance(record.get("target"), dict) and record["target"].get("utt", "") is None


def target_absent_utts(data_dir: os.PathLike) -> List[str]:
    """The target-absent examples of a data dir (from its mixture.jsonl, if any)."""
    meta_path = Path(data_dir) / "mixture.jsonl"
    if not meta_path.is_file():
        return []
    return [u for u, r in read_jsonl(meta_path).items() if is_target_absent(r)]


def swap_partners(data_dir: os.PathLike) -> Dict[str, str]:
    """For each example of a mixture set, the example of the same mixture whose target is its
    (first) interferer: decoding an example with its partner's enrollment must give the other
    talker's words (the swap decode).  Every example needs one; else an error naming it."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "mixture.jsonl"
    if not meta_path.is_file():
        raise DataDirError(f"{meta_path}: missing: a swap decode needs each example's talkers")
    records, wavs = read_jsonl(meta_path), read_kv(data_dir / "wav.scp")
    by_audio_and_target = {(wavs.get(u), r["target"].get("utt")): u for u, r in sorted(records.items())}
    partners = {}
    for utt in sorted(wavs):
        record = records.get(utt)
        if record is None or is_target_absent(record) or not record.get("interferers"):
            raise DataDirError(f"{meta_path}: example '{utt}' has no talker to swap to (target absent, no "
                               "interferer or no record): a swap decode is for sets of mixtures only")
        other = record["interferers"][0].get("utt")
        partner = by_audio_and_target.get((wavs[utt], other))
        if partner is None:
            raise DataDirError(f"{meta_path}: example '{utt}' has no example of its other talker '{other}' in "
                               "the set: a swap decode needs each talker of a mixture as a target "
                               "(stage 1's mix_setting each_target)")
        partners[utt] = partner
    return partners


def validate_data_dir(data_dir: os.PathLike, require: Iterable[str] = ("wav.scp", "text", "utt2spk"),
                      check_paths: bool = True) -> List[str]:
    """Check a data dir; raise DataDirError naming the first problem. Returns utt ids.

    Checks: required files exist; every utt-keyed file is sorted, duplicate-free and
    covers exactly the ids of wav.scp; utt ids start with their speaker id; spk2utt
    agrees with utt2spk; referenced audio files exist; mixture.jsonl (if present)
    covers the same ids.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataDirError(f"{data_dir}: not a directory")
    for name in require:
        if not (data_dir / name).is_file():
            raise DataDirError(f"{data_dir / name}: required file is missing")
    files = {name: read_kv(data_dir / name, allow_empty_value=(name == "text"))
             for name in UTT_FILES if (data_dir / name).is_file()}
    if "wav.scp" not in files:
        raise DataDirError(f"{data_dir / 'wav.scp'}: required file is missing")
    utts = list(files["wav.scp"])
    for name, table in files.items():
        keys = list(table)
        for lineno, (a, b) in enumerate(zip(keys, keys[1:]), 2):
            if a > b:
                raise DataDirError(f"{data_dir / name}:{lineno}: not sorted ('{b}' after '{a}'); "
                                   f"run utils/fix_data_dir.py {data_dir}")
        if set(keys) != set(utts):
            extra = set(keys) - set(utts)
            missing = set(utts) - set(keys)
            counts = f"({len(extra)} extra, {len(missing)} missing)"
            if extra:
                lineno, utt = next((n, k) for n, k in enumerate(keys, 1) if k in extra)
                raise DataDirError(f"{data_dir / name}:{lineno}: utterance '{utt}' is not in wav.scp {counts}")
            lineno, utt = next((n, u) for n, u in enumerate(utts, 1) if u in missing)
            raise DataDirError(f"{data_dir / name}: no line for utterance '{utt}' of "
                               f"{data_dir / 'wav.scp'}:{lineno} {counts}")
    meta = read_jsonl(data_dir / "mixture.jsonl") if (data_dir / "mixture.jsonl").is_file() else {}
    if "text" in files:
        for lineno, (utt, words) in enumerate(files["text"].items(), 1):
            if not words and not is_target_absent(meta.get(utt)):
                raise DataDirError(f"{data_dir / 'text'}:{lineno}: empty transcript for '{utt}' "
                                   "(only a target-absent example of mixture.jsonl has none)")
    if "utt2spk" in files:
        for lineno, (utt, spk) in enumerate(files["utt2spk"].items(), 1):
            if not utt.startswith(spk):
                raise DataDirError(f"{data_dir / 'utt2spk'}:{lineno}: utterance id '{utt}' "
                                   f"does not start with its speaker id '{spk}'")
        expected = {s: " ".join(u) for s, u in spk2utt_from_utt2spk(files["utt2spk"]).items()}
        if (data_dir / "spk2utt").is_file() and read_kv(data_dir / "spk2utt") != expected:
            raise DataDirError(f"{data_dir / 'spk2utt'}: disagrees with utt2spk; "
                               f"run utils/fix_data_dir.py {data_dir}")
    if check_paths:
        for name in PATH_FILES:
            for lineno, (utt, value) in enumerate(files.get(name, {}).items(), 1):
                if not Path(value).is_file():
                    raise DataDirError(f"{data_dir / name}:{lineno}: audio file of '{utt}' "
                                       f"does not exist: {value}")
    if (data_dir / "mixture.jsonl").is_file():
        if set(meta) != set(utts):
            raise DataDirError(f"{data_dir / 'mixture.jsonl'}: utterance ids differ from wav.scp")
    return utts


def fix_data_dir(data_dir: os.PathLike) -> Tuple[int, int]:
    """Sort every utt-keyed file and keep only the ids present in all of them.

    Like Kaldi's fix_data_dir.sh: returns (kept, dropped). spk2utt is rebuilt.
    """
    data_dir = Path(data_dir)
    present = [n for n in UTT_FILES if (data_dir / n).is_file()]
    tables = {n: read_kv(data_dir / n, allow_empty_value=(n == "text")) for n in present}
    common = set.intersection(*(set(t) for t in tables.values())) if tables else set()
    meta = read_jsonl(data_dir / "mixture.jsonl") if (data_dir / "mixture.jsonl").is_file() else {}
    if "text" in tables:
        common = {u for u in common if tables["text"][u] or is_target_absent(meta.get(u))}
    dropped = len(set().union(*(set(t) for t in tables.values())) - common) if tables else 0
    for name, table in tables.items():
        write_kv(data_dir / name, {u: v for u, v in table.items() if u in common})
    if meta:
        write_jsonl(data_dir / "mixture.jsonl", [r for u, r in meta.items() if u in common])
    if "utt2spk" in tables:
        write_spk2utt(data_dir)
    return len(common), dropped

