#!/usr/bin/env python3
"""Stage 2: ESPnet token lists from training transcripts.

``--token_type bpe`` (SentencePiece) writes OUTPUT_DIR/bpe.model and OUTPUT_DIR/tokens.txt.
The token list follows ESPnet (`<blank>`, `<unk>`, pieces by frequency, ...,
`<sos/eos>`) with `<mask>` placed just before `<sos/eos>`: the diffusion decoder's mask
token; `<sos/eos>` doubles as the canvas end/pad fill. Both are looked up by name
downstream.

``--token_type whisper_en`` writes Whisper's vocabulary plus `<mask>` as tokens.txt (the
tokenizer ships with openai-whisper, nothing is trained) and logs how many tokens the
training transcripts take.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import sentencepiece as spm
from espnet2.bin.tokenize_text import tokenize

from diffasr.datadir import DataDirError, read_kv, target_absent_utts
from diffasr.fileio import atomic_path, write_text_atomic

SPECIAL_SYMBOLS = ["<blank>:0", "<unk>:1", "<mask>:-1", "<sos/eos>:-1"]


def read_transcripts(text: Path) -> dict:
    """utt -> transcript of a text file, without the target-absent examples.

    A line without transcript is an error naming file:line, unless the data dir's
    mixture.jsonl marks it a target-absent example (nothing to learn units from).
    """
    absent = set(target_absent_utts(Path(text).parent))
    transcripts = {u: t for u, t in read_kv(text, allow_empty_value=bool(absent)).items() if u not in absent}
    empty = next((u for u, t in transcripts.items() if not t), None)
    if empty is not None:
        raise DataDirError(f"{text}: no transcript for '{empty}', which mixture.jsonl does not mark target-absent")
    return transcripts


def make_token_list(text: Path, output_dir: Path, nbpe: int, bpemode: str = "unigram",
                    character_coverage: float = 1.0) -> Path:
    transcripts = read_transcripts(text)
    with tempfile.TemporaryDirectory(dir=output_dir.parent if output_dir.parent.exists() else None) as tmp:
        tmp = Path(tmp)
        (tmp / "train.txt").write_text("".join(t + "\n" for t in transcripts.values()), encoding="utf-8")
        # The vocabulary can be no larger than what the text supports; say so instead of
        # letting sentencepiece fail with a terse message.
        try:
            spm.SentencePieceTrainer.train(
                input=str(tmp / "train.txt"), vocab_size=nbpe, model_type=bpemode,
                model_prefix=str(tmp / "bpe"), character_coverage=character_coverage,
                input_sentence_size=100_000_000, shuffle_input_sentence=False,
                minloglevel=2, num_threads=1,
            )
        except RuntimeError as e:
            raise SystemExit(f"make_token_list.py: sentencepiece failed on {text} with --nbpe {nbpe}: {e}")
        tokenize(
            input=str(tmp / "train.txt"), output=str(tmp / "tokens.txt"), field=None, delimiter=None,
            token_type="bpe", space_symbol="<space>", non_linguistic_symbols=None,
            bpemodel=str(tmp / "bpe.model"), log_level="WARNING", write_vocabulary=True,
            vocabulary_size=0, remove_non_linguistic_symbols=False, cutoff=0,
            add_symbol=SPECIAL_SYMBOLS, cleaner=None, g2p=None, add_nonsplit_symbol=[],
        )
        output_dir.mkdir(parents=True, exist_ok=True)
        for name in ("bpe.model", "bpe.vocab", "tokens.txt"):
            with atomic_path(output_dir / name) as partial:
                shutil.copy(tmp / name, partial)
    tokens = (output_dir / "tokens.txt").read_text().split()
    logging.info(f"{output_dir / 'tokens.txt'}: {len(tokens)} tokens ({bpemode}, nbpe={nbpe})")
    return output_dir / "tokens.txt"


def make_whisper_token_list(text: Path, output_dir: Path) -> Path:
    from diffasr.whisper.tokenizer import WhisperTextTokenizer, whisper_token_list

    transcripts = read_transcripts(text)
    tokenizer = WhisperTextTokenizer()
    lengths = sorted(len(tokenizer.text2ids(t)) for t in transcripts.values())
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / "tokens.txt"
    write_text_atomic(target, "".join(t + "\n" for t in whisper_token_list()))
    logging.info(f"{target}: Whisper's {len(whisper_token_list()) - 1} tokens + <mask>; {text}: "
                 f"{sum(lengths) / max(len(lengths), 1):.1f} tokens per transcript on average, "
                 f"{lengths[-1] if lengths else 0} at most")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, required=True, help="Kaldi text file of the training set")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--nbpe", type=int, default=100)
    parser.add_argument("--bpemode", choices=["unigram", "bpe", "char", "word"], default="unigram")
    parser.add_argument("--token_type", choices=["bpe", "whisper_en"], default="bpe")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if args.token_type == "whisper_en":
        make_whisper_token_list(args.text, args.output_dir)
    else:
        make_token_list(args.text, args.output_dir, args.nbpe, args.bpemode)


if __name__ == "__main__":
    main()
