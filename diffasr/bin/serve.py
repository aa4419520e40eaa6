#!/usr/bin/env python3
"""Serve a trained model over HTTP (FastAPI under uvicorn).

    python -m diffasr.bin.serve --model exp/asr_diffusion_whisper \\
        --inference_model valid.loss.ave_2best.pth --port 8000 --db exp/serve/speakers.db

``--model`` is a stage-8 zip or an experiment dir.  Set ``DIFFASR_API_KEY`` in the
environment to require that key in the ``X-API-Key`` header of every /v1 request.
Endpoints and limits: README.md, "Serving".
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from diffasr.serve.app import API_KEY_ENV, ServeOptions
from diffasr.speaker import GATE_CHOICES, add_presence_argument


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="stage-8 zip or experiment dir")
    parser.add_argument("--inference_model", default="valid.loss.ave.pth", help="checkpoint of an experiment dir")
    parser.add_argument("--spk_model_dir", default=None, help="speaker encoder (default: packed / exp/spk_*)")
    parser.add_argument("--decode_config", default=None, help="default decode options (a conf/decode/*.yaml)")
    add_presence_argument(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    defaults = ServeOptions()
    parser.add_argument("--db", type=Path, default=defaults.db, help="SQLite file of enrolled speakers")
    parser.add_argument("--max_upload_mb", type=float, default=defaults.max_upload_mb)
    parser.add_argument("--max_audio_seconds", type=float, default=defaults.max_audio_seconds)
    parser.add_argument("--max_concurrent", type=int, default=defaults.max_concurrent,
                        help="requests served at once; more get 429")
    parser.add_argument("--max_batch", type=int, default=defaults.max_batch, help="segments decoded together")
    parser.add_argument("--max_wait_ms", type=float, default=defaults.max_wait_ms,
                        help="how long the queue waits to fill a batch")
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    import uvicorn

    from diffasr.api import TargetSpeakerASR, load_decode_config
    from diffasr.serve.app import build_app

    options = ServeOptions(
        db=args.db, max_upload_mb=args.max_upload_mb, max_audio_seconds=args.max_audio_seconds,
        max_concurrent=args.max_concurrent, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
        api_key=os.environ.get(API_KEY_ENV) or None,
    )
    try:
        asr = TargetSpeakerASR(
            args.model, spk_model_dir=args.spk_model_dir, inference_model=args.inference_model,
            presence_gate=GATE_CHOICES[args.presence_gate],
            device="cuda" if args.ngpu > 0 else "cpu", **load_decode_config(args.decode_config),
        )
        app = build_app(asr, options, model_name=Path(args.model).stem)
    except (ValueError, FileNotFoundError) as e:
        print(f"serve: {e}", file=sys.stderr)
        return 1
    logging.info(f"serving {args.model} on http://{args.host}:{args.port} "
                 f"(API key {'required' if options.api_key else 'off'}, speakers in {args.db})")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
                timeout_graceful_shutdown=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
