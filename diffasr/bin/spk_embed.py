#!/usr/bin/env python3
"""Stage 4: speaker embeddings of a data dir's enrollment audio.

    python -m diffasr.bin.spk_embed --model_dir exp/spk_ecapa_aam --data_dir data/test \
        --output_dir exp/spk_ecapa_aam/embed/test [--scp enroll.scp] [--name enroll_embed]

Writes output_dir/<name>.{ark,scp} (kaldiio, float32 vectors keyed by utterance id) and
data_dir/<name>.scp. For source sets pass `--scp wav.scp` (each utterance embeds itself).
Several sets in one call (the model is loaded once): ``--data_dir A B --output_dir OA OB``.
"""

import argparse
import logging
import sys
from pathlib import Path

from diffasr.datadir import DataDirError
from diffasr.speaker.data import SpeakerDataError
from diffasr.speaker.embed import embed_scp, write_embeddings
from diffasr.speaker.model import device_for, load_trained_encoder


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="stage-3 experiment dir (config.yaml, model.pt)")
    p.add_argument("--data_dir", required=True, nargs="+", help="data dir(s) holding the scp to embed")
    p.add_argument("--output_dir", required=True, nargs="+", help="where the ark/scp go, one per data dir")
    p.add_argument("--scp", default="enroll.scp", help="`<utt> <wav>` list inside data_dir")
    p.add_argument("--name", default="enroll_embed", help="base name of the written ark/scp")
    p.add_argument("--ngpu", type=int, default=0, help="0: CPU; >= 1: the first CUDA device")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(args.data_dir) != len(args.output_dir):
        logging.error("--data_dir and --output_dir name the same number of dirs; got %d and %d",
                      len(args.data_dir), len(args.output_dir))
        return 2
    try:
        encoder, conf = load_trained_encoder(args.model_dir, device_for(args.ngpu))
        for data_dir, output_dir in zip(args.data_dir, args.output_dir):
            embeddings = embed_scp(encoder, conf["sample_rate"], Path(data_dir) / args.scp)
            data_scp = write_embeddings(embeddings, output_dir, data_dir, args.name)
            logging.info("wrote %d embeddings (dim %d) to %s", len(embeddings), encoder.embedding_dim, data_scp)
    except (SpeakerDataError, DataDirError, FileNotFoundError) as e:
        logging.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
