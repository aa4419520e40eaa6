#!/usr/bin/env python3
"""What a training step costs for each way of conditioning on the enrollment.

Builds the model of a training config once per variant (ESPnet-style overrides, as
``asr.sh --asr_args`` gives them), takes one batch of the frozen encoder's cached frames
(the cache of that variant's frozen depth, ``dump/encoder_cache/<fingerprint>/<set>``)
and times forward + backward + optimiser step, after warm-up steps. Writes a Markdown
table and JSON.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/conditioning_step_cost.py --config conf/tuning/train_ar_whisper.yaml \\
        --variant "prefix, frozen 4=" \\
        --variant "cross_attention, frozen 2=--encoder_conf frozen_layers=2 --encoder_conf enrollment=cross_attention" \\
        --output results/conditioning_step_cost
"""

import argparse
import json
import shlex
import statistics
import time
from pathlib import Path

import kaldiio
import numpy as np
import torch

from diffasr.datadir import TARGET_ACTIVITY, read_kv
from diffasr.espnet2.encoder_cache import FROZEN_KEYS
from diffasr.espnet2.teacher import TEACHER, check_teacher_cache, teacher_fingerprint
from diffasr.espnet2.task import DiffASRTask
from diffasr.espnet2.whisper_encoder import frozen_fingerprint
from diffasr.whisper.tokenizer import WhisperTextTokenizer


def _pad(arrays):
    lengths = torch.tensor([len(a) for a in arrays])
    out = torch.zeros(len(arrays), int(lengths.max()), *np.asarray(arrays[0]).shape[1:])
    for b, a in enumerate(arrays):
        out[b, : len(a)] = torch.from_numpy(np.asarray(a))
    return out, lengths


def batch_for(args, train_args, utts):
    """One training batch from the cache of this variant's frozen encoder."""
    frozen = {k: v for k, v in train_args.encoder_conf.items() if k in FROZEN_KEYS}
    cache = Path(args.dump) / "encoder_cache" / frozen_fingerprint(**frozen) / Path(args.data_dir).name
    feats, enroll = kaldiio.load_scp(str(cache / "feats.scp")), kaldiio.load_scp(str(cache / "enroll_feats.scp"))
    text = read_kv(Path(args.data_dir) / "text", allow_empty_value=True)
    tokenizer = WhisperTextTokenizer()
    ids = [tokenizer.text2ids(text[u]) for u in utts]
    tokens = torch.full((len(utts), max(1, max(map(len, ids)))), -1)
    for b, i in enumerate(ids):
        tokens[b, : len(i)] = torch.tensor(i, dtype=torch.long)
    speech, speech_lengths = _pad([feats[u] for u in utts])
    enroll_speech, enroll_lengths = _pad([enroll[u] for u in utts])
    batch = dict(speech=speech, speech_lengths=speech_lengths, text=tokens,
                 text_lengths=torch.tensor([len(i) for i in ids]), enroll_speech=enroll_speech,
                 enroll_speech_lengths=enroll_lengths)
    labels_scp = Path(args.data_dir) / f"{TARGET_ACTIVITY}.scp"
    if labels_scp.is_file():  # read only by a model with model_conf activity_weight > 0
        labels = kaldiio.load_scp(str(labels_scp))
        batch[TARGET_ACTIVITY], batch[f"{TARGET_ACTIVITY}_lengths"] = _pad([labels[u] for u in utts])
    if (train_args.model_conf or {}).get("teacher_weight", 0) > 0:  # the teacher loss is part of the step
        teacher_scp = (Path(args.dump) / "teacher_cache" / teacher_fingerprint(**train_args.encoder_conf)
                       / Path(args.data_dir).name / f"{TEACHER}.scp")
        check_teacher_cache(teacher_scp, train_args.encoder_conf, args.data_dir)
        teachers = kaldiio.load_scp(str(teacher_scp))
        batch[TEACHER], batch[f"{TEACHER}_lengths"] = _pad([teachers[u] for u in utts])
    return batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--token_list", default="data/token_list/whisper_en/tokens.txt")
    parser.add_argument("--variant", action="append", required=True, help="'name=overrides'")
    parser.add_argument("--data_dir", default="data/train")
    parser.add_argument("--dump", default="dump")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    utts = sorted(read_kv(Path(args.data_dir) / "wav.scp"))[: args.batch_size]
    rows = []
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        train_args = DiffASRTask.get_parser().parse_args(
            ["--config", args.config, "--token_list", args.token_list, *shlex.split(overrides)])
        torch.manual_seed(0)
        model = DiffASRTask.build_model(train_args).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        batch = batch_for(args, train_args, utts)
        seconds = []
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()
            loss, _, _ = model(**batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= args.warmup:
                seconds.append(time.perf_counter() - start)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows.append(dict(variant=name, overrides=overrides, step_seconds=round(statistics.median(seconds), 3),
                         trainable_parameters=trainable))
        print(rows[-1], flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    lines = [f"Training step cost ({args.config}, batch {args.batch_size} of {args.data_dir}, cached frames, "
             f"{args.threads} threads, median of {args.steps} steps)", "",
             "| variant | step (s) | trainable parameters |", "|---|---:|---:|"]
    lines += [f"| {r['variant']} | {r['step_seconds']:.2f} | {r['trainable_parameters'] / 1e6:.2f} M |" for r in rows]
    (args.output / "conditioning_step_cost.md").write_text("\n".join(lines) + "\n")
    (args.output / "conditioning_step_cost.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
