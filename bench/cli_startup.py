#!/usr/bin/env python3
"""How long the one-off CLI takes: ``transcribe --help`` and one 3-s recording end to end.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/cli_startup.py --model exp/asr_diffusion_whisper \\
        --data_dir data/test --output exp/cli_startup/cli_startup.md

Each figure is the wall time of a fresh ``python -m diffasr.bin.transcribe`` process (the
median of ``--repeats``), as a user meets it: interpreter start, imports, model loading,
enrollment, decoding, output.  The recording is the first ``--seconds`` of the first
utterance of ``--data_dir`` whose mixture is at least that long, with its enrollment
(``enroll.scp``).  The import profile (``python -X importtime -c "import diffasr.api"``)
lists the modules that take longest.  The model's test WER, where stage 7 scored it,
stands beside the times.  Writes the table to ``--output`` and its figures to the same
name with ``.json``.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from diffasr.datadir import read_kv


def wall(command, repeats: int) -> float:
    """Median wall time of ``command`` (seconds); a failure stops with its output."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, command))} failed:\n{out.stderr[-3000:]}")
    return statistics.median(times)


def import_profile(top: int) -> list:
    """The ``top`` slowest modules of ``import diffasr.api`` (cumulative microseconds, name)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import diffasr.api"],
                         capture_output=True, text=True, check=True)
    rows = []
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, self_us, cumulative, name = (part.strip() for part in line.replace("import time:", "|").split("|"))
            rows.append((int(cumulative), name))
    total = max(rows)[0]
    # Direct imports of diffasr and the packages they pull in, by cumulative time.
    named = [(us, name) for us, name in rows if name.count(".") <= 2]
    return [(total, "diffasr.api")] + sorted(named, reverse=True)[1:top + 1]


def model_wer(model: Path):
    """(decode, WER on test) of the model's scored decodes, if stage 7 ran."""
    for metrics in sorted(model.glob("decode_*/test/metrics.json")):
        if "_rotate" not in metrics.parent.parent.name:
            return metrics.parent.parent.name, json.loads(metrics.read_text()).get("wer")
    return None, None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="experiment dir or stage-8 zip")
    parser.add_argument("--data_dir", type=Path, default=Path("data/test"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--decode_config", default=None)
    parser.add_argument("--inference_model", default="valid.loss.ave_2best.pth")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    wavs, enrolls = read_kv(args.data_dir / "wav.scp"), read_kv(args.data_dir / "enroll.scp")
    utt = next((u for u, p in wavs.items() if sf.info(p).duration >= args.seconds), None)
    if utt is None:
        raise SystemExit(f"{args.data_dir}/wav.scp: no mixture lasts {args.seconds} s")
    audio, rate = sf.read(wavs[utt], dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / f"{utt}_{args.seconds:g}s.wav"
        sf.write(clip, audio[: int(args.seconds * rate)], rate)
        cli = [sys.executable, "-m", "diffasr.bin.transcribe"]
        help_s = wall(cli + ["--help"], args.repeats)
        command = cli + ["--model", str(args.model), "--mixture", str(clip), "--enrollment", enrolls[utt],
                         "--inference_model", args.inference_model]
        if args.decode_config:
            command += ["--decode_config", args.decode_config]
        transcribe_s = wall(command, args.repeats)
    profile = import_profile(top=8)
    decode, wer = model_wer(args.model)

    figures = dict(model=str(args.model), decode_config=args.decode_config, utterance=utt, seconds=args.seconds,
                   repeats=args.repeats, help_s=round(help_s, 3), transcribe_s=round(transcribe_s, 3),
                   model_test_wer=wer, model_test_wer_decode=decode,
                   import_api_s=round(profile[0][0] / 1e6, 3),
                   import_profile=[(name, round(us / 1e6, 3)) for us, name in profile])
    # The table prints the figures as the .json holds them (rounding once, not twice).
    help_s, transcribe_s = figures["help_s"], figures["transcribe_s"]
    wer_text = f"{wer:.2f} % ({decode})" if wer is not None else "not scored"
    lines = [
        f"# CLI start-up: {args.model}", "",
        f"Model test WER: {wer_text}. Wall time of a fresh process, median of {args.repeats}.", "",
        "| what | seconds |", "|---|---:|",
        f"| `python -m diffasr.bin.transcribe --help` | {help_s:.2f} |",
        f"| transcribe one {args.seconds:g}-s recording ({utt}) end to end | {transcribe_s:.2f} |",
        f"| of which `import diffasr.api` (one run, -X importtime) | {figures['import_api_s']:.2f} |", "",
        "Slowest imports under `import diffasr.api` (cumulative):", "",
        "| module | seconds |", "|---|---:|",
        *[f"| `{name}` | {us / 1e6:.2f} |" for us, name in profile[1:]],
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    args.output.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
