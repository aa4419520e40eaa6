#!/usr/bin/env python3
"""Stage 4: speaker embeddings of a data dir's enrollment audio.

    python -m diffasr.bin.spk_embed --model_dir exp/spk_ecapa_aam --data_dir data/test \
        --output_dir exp/spk_ecapa_aam/embed/test [--scp enroll.scp] [--name enroll_embed]

Writes output_dir/<name>.{ark,scp} (kaldiio, float32 vectors keyed by utterance id) and
data_dir/<name>.scp. For source sets pass `--scp wav.scp` (each utterance embeds itself).
"""

import argparse
import logging
import sys
from pathlib import Path

from diffasr.datadir import DataDirError
from diffasr.speaker.audio import SpeakerDataError
from diffasr.speaker.embed import embed_scp, write_embeddings
from diffasr.speaker.model import device_for, load_trained_encoder


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="stage-3 experiment dir (config.yaml, model.pt)")
    p.add_argument("--data_dir", required=True, help="data dir holding the scp to embed")
    p.add_argument("--output_dir", required=True, help="where the ark/scp go")
    p.add_argument("--scp", default="enroll.scp", help="`<utt> <wav>` list inside data_dir")
    p.add_argument("--name", default="enroll_embed", help="base name of the written ark/scp")
    p.add_argument("--ngpu", type=int, default=0, help="0: CPU; >= 1: the first CUDA device")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        encoder, conf = load_trained_encoder(args.model_dir, device_for(args.ngpu))
        embeddings = embed_scp(encoder, conf["sample_rate"], Path(args.data_dir) / args.scp)
        data_scp = write_embeddings(embeddings, args.output_dir, args.data_dir, args.name)
    except (SpeakerDataError, DataDirError, FileNotFoundError) as e:
        logging.error("%s", e)
        return 1
    logging.info("wrote %d embeddings (dim %d) to %s", len(embeddings), encoder.embedding_dim, data_scp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
