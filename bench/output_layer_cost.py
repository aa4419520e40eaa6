#!/usr/bin/env python3
"""What Whisper's 51,864-way output layer costs on CPU, in a training step and a decode step.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/output_layer_cost.py --exp exp/asr_diffusion_whisper --output exp/benchmark/output_layer.md

Times, on the experiment's model and a batch of its cached training frames:
- a full training step (forward, backward, optimiser) and, inside it, the projection
  of the masked positions onto the vocabulary with its cross entropy and backward;
- one denoising step of the decoder at inference (batch 1, a 16-position canvas) and
  the projection of all its positions.
"""

import argparse
import time
from pathlib import Path

import kaldiio
import torch

from diffasr.espnet2.task import DiffASRTask
from diffasr.whisper.tokenizer import WhisperTextTokenizer


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None, help="encoder cache of the training set")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.num_threads)
    torch.manual_seed(0)
    model, train_args = DiffASRTask.build_model_from_file(str(args.exp / "config.yaml"), None, "cpu")
    cache = args.cache or next(Path("dump/encoder_cache").glob("*/train"))
    feats = kaldiio.load_scp(str(cache / "feats.scp"))
    enroll = kaldiio.load_scp(str(cache / "enroll_feats.scp"))
    texts = dict(line.split(maxsplit=1) for line in open("data/train/text", encoding="utf-8"))
    keys = sorted(texts)[: args.batch_size]
    tokenizer = WhisperTextTokenizer()

    def pad(arrays):
        lengths = torch.tensor([len(a) for a in arrays])
        out = torch.zeros(len(arrays), int(lengths.max()), arrays[0].shape[1])
        for b, a in enumerate(arrays):
            out[b, : len(a)] = torch.from_numpy(a.copy())
        return out, lengths

    speech, speech_lengths = pad([feats[k] for k in keys])
    enroll_speech, enroll_lengths = pad([enroll[k] for k in keys])
    ids = [tokenizer.text2ids(texts[k]) for k in keys]
    text = torch.full((len(ids), max(map(len, ids))), -1)
    for b, i in enumerate(ids):
        text[b, : len(i)] = torch.tensor(i)
    text_lengths = torch.tensor([len(i) for i in ids])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()

    def train_step():
        loss, _, _ = model(speech, speech_lengths, text, text_lengths, enroll_speech=enroll_speech,
                           enroll_speech_lengths=enroll_lengths)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    width = model.encoder.output_size()
    # About half of the canvas positions are masked in a training step (t ~ U(0, 1)).
    hidden = torch.randn(int(0.5 * (text_lengths + 1).sum()), width, requires_grad=True)
    targets = torch.randint(0, 50000, (hidden.size(0),))

    def projection_step():
        loss = torch.nn.functional.cross_entropy(model.decoder.project(hidden).float(), targets)
        loss.backward()

    model.eval()
    memory = torch.randn(1, 250, width)
    canvas = torch.full((1, 16), model.mask_id)

    def denoise_step():
        with torch.no_grad():
            model.decoder(memory, torch.tensor([250]), canvas, torch.tensor([16]))

    def decode_projection():
        with torch.no_grad():
            model.decoder.project(torch.randn(1, 16, width))

    model.train()
    rows = [("training step (batch %d, forward + backward + AdamW)" % len(keys), timed(train_step, args.repeats)),
            ("  of which: projecting %d masked positions onto 51,865 tokens + CE + backward" % hidden.size(0),
             timed(projection_step, args.repeats))]
    model.eval()
    rows += [("denoising step (batch 1, canvas of 16)", timed(denoise_step, 20 * args.repeats)),
             ("  of which: projecting the 16 positions", timed(decode_projection, 20 * args.repeats))]
    lines = [f"{args.exp}, {args.num_threads} CPU threads", "", "| what | ms |", "|---|---:|"]
    lines += [f"| {name} | {1000 * seconds:.1f} |" for name, seconds in rows]
    text_out = "\n".join(lines) + "\n"
    print(text_out)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text_out)


if __name__ == "__main__":
    main()
