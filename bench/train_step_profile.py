#!/usr/bin/env python3
"""Where a training step's time goes: ``torch.profiler`` over N steps of each system.

Each ``--system name=config [overrides]`` is built as ``asr.sh`` builds it (the config
with ESPnet-style overrides), on one batch of the frozen encoder's cached frames of its
own frozen depth (``bench/conditioning_step_cost.batch_for``).  After warm-up steps, N
steps run under the profiler with the three phases marked (forward, backward,
optimiser).  Written to ``--output``: per system, the phases' wall time, the top
operators by self CPU time and the forward time of each top-level module (inclusive,
from forward hooks: the profiler names operators, not modules), as Markdown and JSON.

    cd egs/librimix_target/asr1 && . ./path.sh
    python ../../../bench/train_step_profile.py \\
        --system "ar=conf/tuning/train_ar_whisper.yaml" \\
        --system "ar bf16=conf/tuning/train_ar_whisper.yaml --model_conf train_autocast=bf16" \\
        --output results/train_step_profile
"""

import argparse
import collections
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conditioning_step_cost import batch_for  # noqa: E402  (a sibling benchmark's batch)

from diffasr.datadir import read_kv  # noqa: E402
from diffasr.espnet2.task import DiffASRTask  # noqa: E402

PHASES = ("forward", "backward", "optimizer")


class ModuleTimer:
    """Inclusive forward wall time of each child of the model's top-level modules."""

    def __init__(self, model: torch.nn.Module, depth: int = 2):
        self.seconds = collections.defaultdict(float)
        self.started = {}
        for name, module in model.named_modules():
            if name and name.count(".") < depth:
                module.register_forward_pre_hook(self._pre(name))
                module.register_forward_hook(self._post(name))

    def _pre(self, name):
        def hook(module, inputs):
            self.started[name] = time.perf_counter()
        return hook

    def _post(self, name):
        def hook(module, inputs, output):
            self.seconds[name] += time.perf_counter() - self.started.pop(name)
        return hook


def profile_system(args, name: str, spec: str, utts) -> dict:
    config, *overrides = shlex.split(spec)
    train_args = DiffASRTask.get_parser().parse_args(
        ["--config", config, "--token_list", args.token_list, *overrides])
    torch.manual_seed(0)
    model = DiffASRTask.build_model(train_args).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = batch_for(args, train_args, utts)

    def step():
        with record_function("forward"):
            loss, _, _ = model(**batch)
        with record_function("backward"):
            optimizer.zero_grad()
            loss.backward()
        with record_function("optimizer"):
            optimizer.step()

    for _ in range(args.warmup):
        step()
    walls = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            walls.append(time.perf_counter() - start)
    # Module times from a separate, unprofiled pass (hooks would show up in the profile).
    timer = ModuleTimer(model)
    for _ in range(args.steps):
        with torch.no_grad():
            model(**batch)
    events = prof.key_averages()
    phase_ms = {p: e.cpu_time_total / 1e3 / args.steps for e in events for p in PHASES if e.key == p}
    operators = sorted((e for e in events if e.key not in PHASES and not e.key.startswith("ProfilerStep")),
                       key=lambda e: e.self_cpu_time_total, reverse=True)
    total_self = sum(e.self_cpu_time_total for e in operators) or 1.0
    return dict(
        system=name, spec=spec, threads=torch.get_num_threads(), batch_size=len(utts),
        step_seconds=round(statistics.median(walls), 3), phase_ms={k: round(v, 1) for k, v in phase_ms.items()},
        top_operators=[dict(op=e.key, self_ms=round(e.self_cpu_time_total / 1e3 / args.steps, 1),
                            share=round(e.self_cpu_time_total / total_self, 3), calls=e.count // args.steps)
                       for e in operators[: args.top]],
        module_forward_ms={k: round(v * 1e3 / args.steps, 1)
                           for k, v in sorted(timer.seconds.items(), key=lambda kv: -kv[1])})


def markdown(rows, args) -> str:
    lines = [f"# Training step profile", "",
             f"batch {args.batch_size} of {args.data_dir} (cached frozen-encoder frames), {args.threads} threads, "
             f"{args.steps} profiled steps after {args.warmup} warm-up; `bench/train_step_profile.py`", "",
             "| system | step (s) | forward (ms) | backward (ms) | optimiser (ms) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        p = r["phase_ms"]
        lines.append(f"| {r['system']} | {r['step_seconds']:.3f} | {p.get('forward', 0):.0f} | "
                     f"{p.get('backward', 0):.0f} | {p.get('optimizer', 0):.0f} |")
    for r in rows:
        lines += ["", f"## {r['system']}", "", f"`{r['spec']}`", "",
                  "| operator | self CPU (ms/step) | share | calls/step |", "|---|---:|---:|---:|"]
        lines += [f"| `{o['op']}` | {o['self_ms']:.1f} | {100 * o['share']:.1f} % | {o['calls']} |"
                  for o in r["top_operators"]]
        lines += ["", "| module (forward, inclusive) | ms/step |", "|---|---:|"]
        lines += [f"| `{m}` | {ms:.1f} |" for m, ms in r["module_forward_ms"].items() if ms >= 1.0]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", action="append", required=True, help="'name=config [overrides]'")
    parser.add_argument("--token_list", default="data/token_list/whisper_en/tokens.txt")
    parser.add_argument("--data_dir", default="data/train")
    parser.add_argument("--dump", default="dump")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    utts = sorted(read_kv(Path(args.data_dir) / "wav.scp"))[: args.batch_size]  # as conditioning_step_cost
    rows = []
    for spec in args.system:
        name, _, rest = spec.partition("=")
        rows.append(profile_system(args, name, rest, utts))
        print(json.dumps({k: rows[-1][k] for k in ("system", "step_seconds", "phase_ms")}), flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "train_step_profile.md").write_text(markdown(rows, args))
    (args.output / "train_step_profile.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(markdown(rows, args))


if __name__ == "__main__":
    main()
