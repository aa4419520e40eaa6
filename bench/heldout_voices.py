#!/usr/bin/env python3
"""Keep what Whisper knew: WER on clean speech of voices that no training saw.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/heldout_voices.py --data_dir data/test_heldout \\
        --exp exp/asr_ar_whisper --decode_config conf/decode/decode_ar_beam10.yaml \\
        --exp exp/asr_diffusion_whisper --decode_config conf/decode/decode_diffusion_8step.yaml \\
        --output exp/heldout_voices/heldout_voices.md

Zero-shot Whisper tiny.en (``diffasr.whisper.zero_shot``: greedy, and beam 5 as
faster-whisper decodes by default) and each trained experiment (its decode config and
checkpoint, through stage 6's ``diffasr.inference.inference``) decode the same
utterances, and stage 7's scoring (sclite) scores every decode dir
(``<output dir>/decode/<system>/``). A fine-tuned system should be no worse than
Whisper here: ``data/test_heldout`` (stage 1) holds voices outside every split of
every scale, reading sentences no scale reads. ``--decode_config`` and
``--inference_model`` are given once for all experiments or once per ``--exp``.
Writes the table (system, WER, substitutions / deletions / insertions, utterances) to
``--output`` (and prints it), and its rows to the same name with ``.json``.
"""

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import torch

from diffasr.api import load_decode_config
from diffasr.datadir import read_kv
from diffasr.espnet2.builder import read_config
from diffasr.inference import inference
from diffasr.inference.distillation import decode_inputs
from diffasr.inference.options import DecodeOptions
from diffasr.scoring.score import score
from diffasr.whisper.zero_shot import decode_data_dir



def decode_experiment(data_dir: Path, decode_dir: Path, exp: Path, decode_config: Path, model: str,
                      batch_size: int) -> None:
    """One trained experiment over ``data_dir``, as stage 6 decodes it."""
    if any(key in decode_config.read_text() for key in ("{test_set}", "{ar_exp}")):
        raise SystemExit(f"{decode_config} names per-set files ({{test_set}}/{{ar_exp}}); stage 6 renders "
                         "those: decode it with ./run.sh --stage 6 --test_sets <set> instead")
    if not (exp / model).is_file():
        raise SystemExit(f"{exp / model} does not exist (choose another with --inference_model)")
    config = read_config(exp / "config.yaml")
    options = DecodeOptions.from_flat(load_decode_config(decode_config), str(decode_config))
    inference(str(decode_dir), decode_inputs(data_dir, config), str(exp / "config.yaml"), str(exp / model),
              options=options, batch_size=batch_size)


def row(system: str, metrics: dict) -> dict:
    detail = metrics["wer_detail"]
    return {"system": system, "wer": metrics["wer"], "sub": detail["sub"], "del": detail["del"],
            "ins": detail["ins"], "words": detail["n_wrd"], "utterances": metrics["n_utt"],
            "decode_dir": metrics["decode_dir"]}


def table(rows: List[dict], data_dir: Path, voices: int, command: str) -> str:
    percent = lambda n, r: 100.0 * n / r["words"] if r["words"] else 0.0  # noqa: E731
    lines = [f"Clean speech of {voices} voices that no training split has ({data_dir}, "
             f"{rows[0]['utterances']} utterances, {rows[0]['words']} words); WER by sclite.", "",
             "| system | WER (%) | sub / del / ins (%) | utterances |", "|---|---:|---:|---:|"]
    lines += [f"| {r['system']} | {r['wer']:.2f} | {percent(r['sub'], r):.2f} / {percent(r['del'], r):.2f} / "
              f"{percent(r['ins'], r):.2f} | {r['utterances']} |" for r in rows]
    return "\n".join(lines + ["", f"Command: `{command}`"]) + "\n"


def per_exp(values: Optional[list], n: int, what: str, default=None) -> list:
    """One value per experiment: given once for all of them, or once each."""
    values = values or ([default] if default is not None and n else [])
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise SystemExit(f"{what}: give it once for all {n} --exp, or once per --exp (got {len(values)})")
    return values


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=Path("data/test_heldout"))
    parser.add_argument("--exp", type=Path, action="append", default=[], help="a trained experiment (repeatable)")
    parser.add_argument("--decode_config", type=Path, action="append", help="conf/decode/*.yaml (per --exp)")
    parser.add_argument("--inference_model", action="append",
                        help="checkpoint in the experiment dir (per --exp; default valid.loss.ave_2best.pth)")
    parser.add_argument("--whisper_beam_sizes", type=int, nargs="*", default=[1, 5],
                        help="zero-shot Whisper tiny.en rows: 1 is greedy; none for no Whisper row")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances per batch of a trained system")
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path("exp/heldout_voices/heldout_voices.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    torch.set_num_threads(args.num_threads)
    configs = per_exp(args.decode_config, len(args.exp), "--decode_config")
    models = per_exp(args.inference_model, len(args.exp), "--inference_model", "valid.loss.ave_2best.pth")
    decode_root = args.output.parent / "decode"
    rows = []
    for beam in args.whisper_beam_sizes:
        name = "whisper_tiny_en_" + ("greedy" if beam == 1 else f"beam{beam}")
        decode_data_dir(args.data_dir, decode_root / name, beam)
        label = f"Whisper tiny.en zero-shot, {'greedy' if beam == 1 else f'beam {beam}'}"
        rows.append(row(label, score(args.data_dir, decode_root / name)))
        logging.info("%s: WER %.2f", label, rows[-1]["wer"])
    for exp, config, model in zip(args.exp, configs, models):
        name = f"{exp.name}_{config.stem}_{Path(model).stem}"
        decode_experiment(args.data_dir, decode_root / name, exp, config, model, args.batch_size)
        rows.append(row(f"{exp.name} ({config.stem}, {model})", score(args.data_dir, decode_root / name)))
        logging.info("%s: WER %.2f", rows[-1]["system"], rows[-1]["wer"])
    if not rows:
        raise SystemExit("nothing to decode: give --exp or --whisper_beam_sizes")
    voices = len(set(read_kv(args.data_dir / "utt2spk").values()))
    command = " ".join(["python", "bench/heldout_voices.py"] + [shlex.quote(a) for a in (argv or sys.argv[1:])])
    text = table(rows, args.data_dir, voices, command)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
