#!/usr/bin/env python3
"""Stage 4: the target-presence gate (``diffasr.speaker.presence``).

    # window embeddings of each mixture of a set: <output_dir>/window_embed.{ark,scp}, data_dir/window_embed.scp
    python -m diffasr.bin.spk_presence embed --model_dir exp/spk_ecapa_aam --data_dir data/dev \
        --output_dir exp/spk_ecapa_aam/presence/dev
    # the threshold, on a set with target-absent examples: <model_dir>/presence.yaml
    python -m diffasr.bin.spk_presence choose --model_dir exp/spk_ecapa_aam --data_dir data/dev \
        [--max_lost 0.03]
"""

import argparse
import logging
import sys
from pathlib import Path

import kaldiio

from diffasr.espnet2.enrollment import ENROLL_EMBED
from diffasr.datadir import DataDirError, read_kv, target_absent_utts, write_kv
from diffasr.audio import read_listed
from diffasr.speaker.data import SpeakerDataError
from diffasr.speaker.embed import write_embeddings
from diffasr.speaker.model import device_for, load_trained_encoder
from diffasr.speaker.presence import (PRESENCE_FILE, WINDOW_EMBED, PresenceGate, choose_threshold, presence_score,
                                      read_window_shape, window_embeddings, write_window_shape)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    embed = sub.add_parser("embed", help="window embeddings of each mixture (wav.scp) of a data dir")
    embed.add_argument("--model_dir", required=True, help="stage-3 experiment dir (config.yaml, model.pt)")
    embed.add_argument("--data_dir", required=True, nargs="+", help="data dir(s) with wav.scp")
    embed.add_argument("--output_dir", required=True, nargs="+", help="where window_embed.{ark,scp} go, one per data dir")
    embed.add_argument("--window_seconds", type=float, default=PresenceGate.window_seconds)
    embed.add_argument("--hop_seconds", type=float, default=PresenceGate.hop_seconds)
    embed.add_argument("--ngpu", type=int, default=0)
    absent = sub.add_parser("absent", help="print how many target-absent examples a data dir has (nothing if none)")
    absent.add_argument("--data_dir", required=True)
    choose = sub.add_parser("choose", help="the threshold, on a data dir with target-absent examples")
    choose.add_argument("--model_dir", required=True, help="writes <model_dir>/" + PRESENCE_FILE)
    choose.add_argument("--data_dir", required=True, help="with window_embed.scp and enroll_embed.scp")
    choose.add_argument("--max_lost", type=float, default=0.03,
                        help="the largest share of present targets the gate may empty on this set")
    return p


def scores(data_dir: Path):
    """utt -> presence score, from the set's window and enrollment embeddings."""
    window_scp, enroll_scp = data_dir / f"{WINDOW_EMBED}.scp", data_dir / f"{ENROLL_EMBED}.scp"
    for scp in (window_scp, enroll_scp):
        if not scp.is_file():
            raise FileNotFoundError(f"{scp}: missing (stage 4 writes it)")
    enroll = kaldiio.load_scp(str(enroll_scp))
    out = {}
    for lineno, (utt, location) in enumerate(read_kv(window_scp).items(), 1):
        if utt not in enroll:
            raise DataDirError(f"{window_scp}:{lineno}: utterance '{utt}' has no enrollment embedding in {enroll_scp}")
        out[utt] = presence_score(kaldiio.load_mat(location), enroll[utt])
    return out


def embed_windows(encoder, sample_rate: int, data_dir: Path, output_dir, window_seconds: float,
                  hop_seconds: float) -> None:
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise FileNotFoundError(f"{wav_scp}: missing (stage 1 writes it)")
    embeds = {}
    for utt, path in read_kv(wav_scp).items():
        samples = read_listed(path, utt, sample_rate, "mixture audio", wav_scp)
        embeds[utt] = window_embeddings(encoder, samples, sample_rate, window_seconds, hop_seconds)
        if len(embeds) % 100 == 0:
            logging.info("%s: %d of the mixtures embedded", wav_scp, len(embeds))
    write_embeddings(embeds, output_dir, data_dir, WINDOW_EMBED)
    write_window_shape(data_dir, window_seconds, hop_seconds)
    logging.info("%s: window embeddings of %d mixtures", data_dir, len(embeds))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "absent":
        data_dir = Path(args.data_dir)
        count = len(target_absent_utts(data_dir))
        if count:
            print(count)
        return 0
    try:
        if args.command == "embed":
            if len(args.data_dir) != len(args.output_dir):
                raise ValueError(f"--data_dir and --output_dir name the same number of dirs; got "
                                 f"{len(args.data_dir)} and {len(args.output_dir)}")
            encoder, conf = load_trained_encoder(args.model_dir, device_for(args.ngpu))
            for data_dir, output_dir in zip(map(Path, args.data_dir), args.output_dir):
                embed_windows(encoder, conf["sample_rate"], data_dir, output_dir, args.window_seconds,
                              args.hop_seconds)
            return 0
        data_dir = Path(args.data_dir)
        by_utt = scores(data_dir)
        absent = set(target_absent_utts(data_dir))
        figures = choose_threshold([s for u, s in by_utt.items() if u not in absent],
                                   [s for u, s in by_utt.items() if u in absent], args.max_lost)
        gate = PresenceGate(threshold=figures["threshold"], **read_window_shape(data_dir))
        gate.save(Path(args.model_dir) / PRESENCE_FILE, dict(figures, data_dir=str(data_dir)))
        write_kv(Path(args.model_dir) / "presence_scores", {u: f"{s:.4f}" for u, s in sorted(by_utt.items())})
        logging.info("presence threshold %.4f on %s: %.1f %% of %d target-absent examples caught, "
                     "%.1f %% of %d present targets lost", gate.threshold, data_dir,
                     100 * figures["absent_caught"], figures["absent"], 100 * figures["present_lost"],
                     figures["present"])
    except (SpeakerDataError, DataDirError, FileNotFoundError, ValueError) as e:
        logging.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
