#!/usr/bin/env python3
"""What dynamic mixing would add to a training step: the features it cannot cache.

With mixtures drawn anew each epoch (SpeechBrain's dynamic mixing), neither the frozen
encoder's frames of the mixture nor the clean-target teacher can be computed once per set:
each batch needs (a) the frozen Whisper layers on the new mixtures and (b) the complete
frozen encoder on each target alone (the teacher).  This times both on a batch of the
training set (the mixtures and the targets as stage 1 placed them, ``mixture.jsonl``) and
the cached training step itself (``bench/train_step_profile.py``'s step), at the same
threads.  Written: ``dynamic_mixing_cost.{md,json}``.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/dynamic_mixing_cost.py --config conf/tuning/train_ar_whisper.yaml \\
        --step_overrides "--model_conf teacher_only=true" --output_dir results/dynamic_mixing_cost
"""

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditioning_step_cost import _pad, batch_for  # noqa: E402

from diffasr.datadir import read_jsonl, read_kv  # noqa: E402
from diffasr.espnet2.task import DiffASRTask  # noqa: E402
from diffasr.espnet2.teacher import placed_source  # noqa: E402
from diffasr.espnet2.whisper_encoder import WhisperEncoder  # noqa: E402


def timed(function, repeats: int) -> float:
    function()  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--step_overrides", default="", help="ESPnet-style overrides of the timed step")
    parser.add_argument("--token_list", default="data/token_list/whisper_en/tokens.txt")
    parser.add_argument("--data_dir", default="data/train")
    parser.add_argument("--dump", default="dump")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data_dir)
    utts = sorted(read_kv(data / "wav.scp"))[: args.batch_size]
    wav, records = read_kv(data / "wav.scp"), read_jsonl(data / "mixture.jsonl")
    train_args = DiffASRTask.get_parser().parse_args(
        ["--config", args.config, "--token_list", args.token_list, *shlex.split(args.step_overrides)])
    conf = train_args.encoder_conf
    frozen = WhisperEncoder(whisper_model=conf.get("whisper_model", "tiny.en"), padding=conf.get("padding", "none"),
                            frozen_layers=conf["frozen_layers"], adapter_blocks=0)
    complete = WhisperEncoder(whisper_model=conf.get("whisper_model", "tiny.en"), padding=conf.get("padding", "none"),
                              frozen_layers=None, adapter_blocks=0)
    mixtures = [soundfile.read(wav[u], dtype="float32")[0] for u in utts]
    targets = []
    for u, m in zip(utts, mixtures):
        target = records[u]["target"]
        targets.append(placed_source(target["path"], target["offset_samples"], target["gain"], len(m))
                       if target.get("utt") else np.zeros(len(m), np.float32))
    mix_audio, mix_lengths = _pad(mixtures)
    target_audio, target_lengths = _pad(targets)
    with torch.no_grad():
        frozen_seconds = timed(lambda: frozen.frozen(mix_audio, mix_lengths), args.repeats)
        teacher_seconds = timed(lambda: complete.frozen(target_audio, target_lengths), args.repeats)

    torch.manual_seed(0)
    model = DiffASRTask.build_model(train_args).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = batch_for(args, train_args, utts)

    def step():
        loss, _, _ = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step_seconds = timed(step, args.repeats)
    added = frozen_seconds + teacher_seconds
    report = dict(config=args.config, step_overrides=args.step_overrides, batch_size=len(utts), threads=args.threads,
                  mean_mixture_seconds=float(np.mean([len(m) for m in mixtures]) / 16000),
                  cached_step_seconds=step_seconds, frozen_layers_seconds=frozen_seconds,
                  teacher_seconds=teacher_seconds, dynamic_step_seconds=step_seconds + added,
                  updates_per_minute_cached=60 / step_seconds, updates_per_minute_dynamic=60 / (step_seconds + added))
    lines = ["# Dynamic mixing: what a step would add", "",
             f"`bench/dynamic_mixing_cost.py`, `{args.config}` `{args.step_overrides}`, batch {len(utts)} of "
             f"`{args.data_dir}` (mean {report['mean_mixture_seconds']:.2f} s), {args.threads} threads, "
             f"median of {args.repeats}", "",
             "| part | seconds per batch |", "|---|---:|",
             f"| cached training step (forward + backward + optimiser) | {step_seconds:.3f} |",
             f"| frozen Whisper layers on the new mixtures | {frozen_seconds:.3f} |",
             f"| the teacher: complete frozen encoder on each target alone | {teacher_seconds:.3f} |",
             f"| a dynamic-mixing step | {step_seconds + added:.3f} ({(step_seconds + added) / step_seconds:.2f}x) |",
             "", f"Updates per minute: {report['updates_per_minute_cached']:.1f} cached, "
             f"{report['updates_per_minute_dynamic']:.1f} with dynamic mixing."]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "dynamic_mixing_cost.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.output_dir / "dynamic_mixing_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
