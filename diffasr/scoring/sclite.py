"""Score hypotheses with NIST sclite (SCTK), the way ESPnet's asr.sh scoring stage does.

For one unit (words or characters) `score_with_sclite` writes into a score dir:
- `ref.trn`, `hyp.trn`: `WORDS (spk-utt)` lines, sclite's "trn" format;
- `result.txt`: sclite's `-o all` report (per-speaker and Sum/Avg tables, per-utterance
  alignments);
- `alignment.sgml`: the same alignments in sclite's SGML form, which this module parses
  to label every hypothesis word correct or incorrect;
- `utt_errors.txt`: per-utterance error counts from those alignments, worst first.

Character scoring uses ESPnet's convention: every character is a token and the word
boundary is the token `<space>` (see `words_to_chars`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from diffasr.datadir import read_kv, target_absent_utts

DEBIAN_SCLITE = "/usr/lib/sctk/bin/sclite"

# One aligned pair in sclite's SGML: `C,"ref","hyp"`; deletions have no hyp, insertions no ref.
_SGML_OP = re.compile(r'([CSDI]),(?:"([^"]*)")?,(?:"([^"]*)")?')
_SGML_PATH = re.compile(r'<PATH id="\(([^)]*)\)"')


class ScoringError(ValueError):
    """Inputs to scoring are inconsistent; the message names the file and utterance."""


@dataclass
class ScliteSummary:
    """Counts from sclite's Sum line; error rates in percent are derived from them."""

    n_snt: int
    n_wrd: int
    corr: int
    sub: int
    dele: int
    ins: int
    err: int
    snt_err: int
    # sclite's own rounded Sum/Avg percentages, as printed in result.txt.
    printed_percent: Dict[str, float] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return 100.0 * self.err / self.n_wrd if self.n_wrd else 0.0

    def as_dict(self) -> Dict[str, float]:
        return {"n_snt": self.n_snt, "n_wrd": self.n_wrd, "corr": self.corr, "sub": self.sub,
                "del": self.dele, "ins": self.ins, "err": self.err, "snt_err": self.snt_err,
                "error_rate": round(self.error_rate, 4)}


@dataclass
class UttAlignment:
    """sclite's alignment of one utterance: (op, ref token, hyp token) with op in C/S/D/I."""

    utt: str
    ops: List[Tuple[str, Optional[str], Optional[str]]]

    def hyp_word_correct(self) -> List[bool]:
        """One label per hypothesis token, in hypothesis order: True when sclite calls it correct."""
        return [op == "C" for op, _, hyp in self.ops if op != "D"]


@dataclass
class ScliteResult:
    summary: ScliteSummary
    alignments: Dict[str, UttAlignment]


def find_sclite() -> str:
    """Path of sclite: Debian's sctk package first, else `sclite` on PATH."""
    if os.access(DEBIAN_SCLITE, os.X_OK):
        return DEBIAN_SCLITE
    found = shutil.which("sclite")
    if found is None:
        raise FileNotFoundError(
            f"sclite not found (looked for {DEBIAN_SCLITE} and on PATH); "
            "run tools/install.sh, which installs Debian's sctk package")
    return found


def words_to_chars(text: str) -> str:
    """ESPnet's character tokens: 'AB C' -> 'A B <space> C'."""
    return " ".join("<space>" if c == " " else c for c in " ".join(text.split()))


def read_hypotheses(hyp_path: os.PathLike, refs: Mapping[str, str],
                    ref_path: os.PathLike = "reference") -> Dict[str, str]:
    """Hypotheses for every reference utterance, in reference order.

    A reference utterance without a hypothesis is scored as an empty hypothesis (with a
    warning naming it); a hypothesis for an utterance not in the reference is an error.
    """
    hyps = read_kv(hyp_path, allow_empty_value=True)
    for lineno, utt in enumerate(hyps, 1):
        if utt not in refs:
            raise ScoringError(f"{hyp_path}:{lineno}: hypothesis for utterance '{utt}' "
                               f"which is not in the reference {ref_path}")
    missing = [utt for utt in refs if utt not in hyps]
    for utt in missing:
        logging.warning("%s: no hypothesis for utterance '%s'; scoring it as empty", hyp_path, utt)
    return {utt: hyps.get(utt, "") for utt in refs}


def sclite_ids(utts: List[str], utt2spk: Mapping[str, str]) -> Dict[str, str]:
    """utt -> sclite id `spk-utt` (ESPnet's form; sclite takes the speaker from the prefix)."""
    ids: Dict[str, str] = {}
    seen: Dict[str, str] = {}
    for utt in utts:
        if utt not in utt2spk:
            raise ScoringError(f"utt2spk: no speaker for utterance '{utt}'")
        sid = f"{utt2spk[utt]}-{utt}"
        if any(c in sid for c in "() \t"):
            raise ScoringError(f"utterance '{utt}' or its speaker contains a parenthesis or "
                               "blank, which sclite's trn format cannot carry")
        # sclite lower-cases ids in its SGML, so ids must stay unique without case.
        if sid.lower() in seen:
            raise ScoringError(f"utterances '{seen[sid.lower()]}' and '{utt}' differ only in "
                               "case, which sclite cannot tell apart")
        seen[sid.lower()] = utt
        ids[utt] = sid
    return ids


def write_trn(path: os.PathLike, texts: Mapping[str, str], ids: Mapping[str, str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for utt, text in texts.items():
            f.write(f"{' '.join(text.split())} ({ids[utt]})\n")


def parse_summary(report: str, source: str = "result.txt") -> ScliteSummary:
    """Read the `Sum` (counts) and `Sum/Avg` (percent) rows of sclite's `-o all` report."""
    def row(label: str) -> List[float]:
        match = re.search(rf"^\s*\|\s*{re.escape(label)}\s*\|([^\n]*)$", report, re.M)
        if match is None:
            raise ScoringError(f"{source}: no '{label}' row in sclite's report")
        return [float(x) for x in match.group(1).replace("|", " ").split()]

    counts = row("Sum")
    percent = row("Sum/Avg")
    if len(counts) != 8 or len(percent) != 8:
        raise ScoringError(f"{source}: unexpected layout of sclite's Sum rows")
    n_snt, n_wrd, corr, sub, dele, ins, err, snt_err = (int(round(x)) for x in counts)
    names = ("corr", "sub", "del", "ins", "err", "snt_err")
    return ScliteSummary(n_snt, n_wrd, corr, sub, dele, ins, err, snt_err,
                         printed_percent=dict(zip(names, percent[2:])))


def parse_sgml(sgml: str, id_to_utt: Mapping[str, str], source: str = "alignment.sgml"
               ) -> Dict[str, UttAlignment]:
    """Per-utterance alignments from sclite's `-o sgml` output."""
    alignments: Dict[str, UttAlignment] = {}
    lines = sgml.splitlines()
    for i, line in enumerate(lines):
        match = _SGML_PATH.match(line)
        if match is None:
            continue
        sid = match.group(1)
        if sid not in id_to_utt:
            raise ScoringError(f"{source}:{i + 1}: unknown utterance id '({sid})'")
        body = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("</PATH") else ""
        ops = [(m.group(1), m.group(2), m.group(3)) for m in _SGML_OP.finditer(body)]
        alignments[id_to_utt[sid]] = UttAlignment(id_to_utt[sid], ops)
    return alignments


def score_with_sclite(score_dir: os.PathLike, refs: Mapping[str, str], hyps: Mapping[str, str],
                      utt2spk: Mapping[str, str], sclite: Optional[str] = None) -> ScliteResult:
    """Write trn files, run sclite into `score_dir`, and return its summary and alignments.

    `refs` and `hyps` map utt -> space-separated tokens and must hold the same utterances.
    """
    if set(refs) != set(hyps):
        odd = sorted(set(refs) ^ set(hyps))[0]
        raise ScoringError(f"utterance '{odd}' is in only one of reference and hypothesis")
    sclite = sclite or find_sclite()
    score_dir = Path(score_dir)
    score_dir.mkdir(parents=True, exist_ok=True)
    ids = sclite_ids(list(refs), utt2spk)
    write_trn(score_dir / "ref.trn", refs, ids)
    write_trn(score_dir / "hyp.trn", {u: hyps[u] for u in refs}, ids)

    # One run writes both reports to stdout, the "all" report first, then the SGML.
    cmd = [sclite, "-r", "ref.trn", "trn", "-h", "hyp.trn", "trn", "-i", "rm", "-o", "all", "sgml", "stdout"]
    proc = subprocess.run(cmd, cwd=score_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sclite failed in {score_dir} ({' '.join(cmd)}): "
                           f"{(proc.stderr or proc.stdout)[-2000:]}")
    split = proc.stdout.find("\n<SYSTEM ") + 1
    if split == 0:
        raise RuntimeError(f"sclite in {score_dir} ({' '.join(cmd)}) wrote no SGML alignment")
    report, sgml = proc.stdout[:split], proc.stdout[split:]
    (score_dir / "result.txt").write_text(report, encoding="utf-8")
    (score_dir / "alignment.sgml").write_text(sgml, encoding="utf-8")

    summary = parse_summary(report, str(score_dir / "result.txt"))
    alignments = parse_sgml(sgml, {sid.lower(): utt for utt, sid in ids.items()},
                            str(score_dir / "alignment.sgml"))
    for utt in refs:
        n_hyp = len(hyps[utt].split())
        if utt not in alignments or len(alignments[utt].hyp_word_correct()) != n_hyp:
            raise ScoringError(f"{score_dir / 'alignment.sgml'}: alignment of '{utt}' does not "
                               f"cover its {n_hyp} hypothesis tokens")
    write_utt_errors(score_dir / "utt_errors.txt", alignments)
    return ScliteResult(summary, alignments)


def write_utt_errors(path: os.PathLike, alignments: Mapping[str, UttAlignment]) -> None:
    """One line per utterance, worst first: `utt #ref #cor #sub #del #ins err%`."""
    rows = []
    for utt, alignment in alignments.items():
        ops = [op for op, _, _ in alignment.ops]
        counts = {op: ops.count(op) for op in "CSDI"}
        n_ref = counts["C"] + counts["S"] + counts["D"]
        n_err = counts["S"] + counts["D"] + counts["I"]
        rate = 100.0 * n_err / n_ref if n_ref else (0.0 if not n_err else float("inf"))
        rows.append((rate, utt, n_ref, counts))
    rows.sort(key=lambda row: (-row[0], row[1]))
    with open(path, "w", encoding="utf-8") as f:
        f.write("# utt #ref #cor #sub #del #ins err%\n")
        for rate, utt, n_ref, c in rows:
            f.write(f"{utt} {n_ref} {c['C']} {c['S']} {c['D']} {c['I']} {rate:.2f}\n")


def read_scoring_inputs(data_dir: os.PathLike, decode_dir: os.PathLike
                        ) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str]]:
    """(refs, hyps, utt2spk) from `<data_dir>/{text,utt2spk}` and `<decode_dir>/text`.

    Hypotheses come back in reference order, missing ones filled in as empty.  The
    target-absent examples (empty transcripts that mixture.jsonl marks so) are left out:
    they have no words to score (``diffasr.scoring.confusion.target_absent_metrics``).
    """
    data_dir, decode_dir = Path(data_dir), Path(decode_dir)
    absent = set(target_absent_utts(data_dir))
    refs = read_kv(data_dir / "text", allow_empty_value=bool(absent))
    empty = next((u for u, t in refs.items() if not t and u not in absent), None)
    if empty is not None:
        raise ScoringError(f"{data_dir / 'text'}: no transcript for '{empty}', which is not a target-absent "
                           "example of mixture.jsonl")
    utt2spk = read_kv(data_dir / "utt2spk")
    hyps = read_hypotheses(decode_dir / "text", refs, data_dir / "text")
    return ({u: t for u, t in refs.items() if u not in absent}, {u: h for u, h in hyps.items() if u not in absent},
            utt2spk)


def score_words_and_chars(data_dir: os.PathLike, decode_dir: os.PathLike,
                          sclite: Optional[str] = None) -> Dict[str, object]:
    """Score a decode dir into `score_wer/` and `score_cer/`.

    Returns {"wer": ScliteResult, "cer": ScliteResult, "refs", "hyps", "utt2spk"}.
    """
    decode_dir = Path(decode_dir)
    refs, hyps, utt2spk = read_scoring_inputs(data_dir, decode_dir)
    wer = score_with_sclite(decode_dir / "score_wer", refs, hyps, utt2spk, sclite)
    cer = score_with_sclite(decode_dir / "score_cer",
                            {u: words_to_chars(t) for u, t in refs.items()},
                            {u: words_to_chars(t) for u, t in hyps.items()}, utt2spk, sclite)
    return {"wer": wer, "cer": cer, "refs": refs, "hyps": hyps, "utt2spk": utt2spk}
