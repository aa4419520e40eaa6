"""Sequence-level distillation: the diffusion decoder trained on the AR system's own outputs.

Kim & Rush's sequence-level knowledge distillation, as non-autoregressive translation uses it:
the AR system's beam output is a target that an AR decoder found, so it is easier to fit
than the reference, and a model trained on it inherits the AR system's accuracy.
``model_conf distill_share`` replaces each training example's reference by that output with
probability ``distill_share`` (``distilled_targets``; 0: the references alone, as before).

The outputs are decoded once per training set (``diffasr.inference.distillation``, run by
``python -m diffasr.bin.make_distillation``) into a Kaldi ``text`` file, the data name
``text_distill``, tokenized like ``text``.  ``meta.json`` beside it, written last, says what
made it, in parts:

- ``ar_model``: the digests of the AR model file and of its ``config.yaml``;
- ``tokens``: the token type and the digest of the token list the hypotheses were written in;
- ``data``: the digest of the data dir's ``wav.scp`` and its number of utterances;
- ``decoding``: the decode options and the audio decoded (the mixture or the clean target).

``check_distillation`` compares the parts a caller knows (training knows the tokens and the
data; the recipe, which names the AR experiment, knows them all) and refuses a file that does
not match, naming both sides, or that lacks an utterance of the training set.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import torch

TEXT_DISTILL = "text_distill"  # data name: the AR system's output for each training example
META = "meta.json"
MAKE_IT = "python -m diffasr.bin.make_distillation (asr.sh stage 5 runs it for a config with distill_share > 0)"
# Fields of a part that say where it was made from, for messages; the rest is compared.
WHERE = ("model_file", "config_file", "data_dir", "token_list_file")


class DistillationError(ValueError):
    """A distillation file that does not fit the AR model, the tokens or the data it is used with."""


def file_digest(path: os.PathLike) -> str:
    """md5 of a file, read in blocks (a model file is hundreds of MB)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokens_part(token_type: str, token_list: Union[str, os.PathLike, Sequence[str]]) -> dict:
    """The token type and the digest of the token list (a file, or the list a config.yaml holds)."""
    where = {}
    if isinstance(token_list, (str, os.PathLike)):
        where["token_list_file"] = str(token_list)
        with open(token_list, encoding="utf-8") as f:
            token_list = [line.rstrip("\n") for line in f]
    listed = "\n".join(token_list).encode("utf-8")
    return dict(token_type=token_type, token_list=hashlib.md5(listed).hexdigest(), **where)


def data_part(data_dir: os.PathLike) -> dict:
    """The data dir's ``wav.scp``: its digest and number of utterances."""
    wav_scp = Path(data_dir) / "wav.scp"
    if not wav_scp.is_file():
        raise FileNotFoundError(f"{wav_scp}: missing (stage 1 writes it)")
    with open(wav_scp, encoding="utf-8") as f:
        count = sum(1 for line in f if line.strip())
    return {"data_dir": str(Path(data_dir).resolve()), "wav.scp": file_digest(wav_scp), "num_utterances": count}


def compared(part: dict) -> dict:
    return {k: v for k, v in part.items() if k not in WHERE}


def fingerprint(parts: Dict[str, dict]) -> str:
    """A short name of the compared fields of ``parts`` (the cache dir's name)."""
    text = json.dumps({name: compared(part) for name, part in sorted(parts.items())}, sort_keys=True)
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:12]


def read_meta(text: os.PathLike) -> dict:
    meta_path = Path(text).parent / META
    if not meta_path.is_file():
        raise DistillationError(f"{text}: no {META} beside it: not a complete distillation file ({MAKE_IT})")
    return json.loads(meta_path.read_text(encoding="utf-8"))


def mismatch(meta: dict, expected: Dict[str, dict]) -> Optional[str]:
    """The first part of ``expected`` that ``meta`` does not match, described on both sides; None if all do."""
    for name, part in expected.items():
        made = meta.get(name) or {}
        if compared(made) != compared(part):
            return f"{name}: the file's is {made}; expected {part}"
    return None


def check_distillation(text: os.PathLike, expected: Dict[str, dict], keys: Optional[Iterable[str]] = None,
                       keys_file: Optional[os.PathLike] = None) -> None:
    """Refuse a distillation file made from something else than ``expected`` (parts as in the
    module docstring), naming both sides, or lacking one of ``keys`` (the utterances of
    ``keys_file``, named in the message)."""
    text = Path(text)
    difference = mismatch(read_meta(text), expected)
    if difference is not None:
        raise DistillationError(f"{text} was made from other inputs than these ({difference}): make it again "
                                f"({MAKE_IT})")
    if keys is not None:
        from diffasr.datadir import read_kv

        listed = read_kv(text, allow_empty_value=True)
        missing = [k for k in keys if k not in listed]
        if missing:
            raise DistillationError(f"{text}: no line for utterance {missing[0]!r}"
                                    + (f" of {keys_file}" if keys_file else "")
                                    + f" ({len(missing)} missing): it was made for another set ({MAKE_IT})")


def distilled_targets(text: torch.Tensor, text_lengths: torch.Tensor, distill: torch.Tensor,
                      distill_lengths: torch.Tensor, share: float,
                      pad: int = -1) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row of ``text`` [B, U] replaced by that of ``distill`` [B, U'] with probability
    ``share``, drawn as ``torch.rand(B) < share`` from torch's global generator (seeded
    with the rest of training).  Returns the targets [B, max(U, U')] padded with ``pad``,
    their lengths and which rows were replaced [B]."""
    chosen = torch.rand(text.size(0), device=text.device) < share
    width = max(text.size(1), distill.size(1))
    text = torch.nn.functional.pad(text, (0, width - text.size(1)), value=pad)
    distill = torch.nn.functional.pad(distill.to(text.dtype), (0, width - distill.size(1)), value=pad)
    lengths = torch.where(chosen, distill_lengths.to(text_lengths.dtype), text_lengths)
    return torch.where(chosen[:, None], distill, text), lengths, chosen
