"""Weight-space ensembling of a fine-tuned system with the Whisper it started from (WiSE-FT).

Wortsman et al. (2022, "Robust fine-tuning of zero-shot models") found that a linear
interpolation between a zero-shot model's weights and the same model fine-tuned on a
narrow set keeps most of the fine-tuning's gain in its domain and most of the zero-shot
model's robustness outside it; no training, one pass over the weights. Here the narrow set
is the embedded corpus (synthesized voices) and "outside" is real speech (issue #36).

Only Whisper's own weights are interpolated (``PRETRAINED_PARAMETERS``: the encoder's
Whisper layers, a Whisper decoder); the modules the system added (the enrollment's,
the heads, a diffusion decoder's mask embedding) have no pretrained value and are kept as
trained.
"""

import logging
from pathlib import Path
from typing import Dict, Iterable, Tuple, Union

import torch

from diffasr.espnet2.builder import build_model_from_file
from diffasr.espnet2.task import PRETRAINED_PARAMETERS

# The Whisper parts a system may interpolate, by name (``PRETRAINED_PARAMETERS`` split).
PARTS = {prefix.split(".")[0]: prefix for prefix in PRETRAINED_PARAMETERS}


def wise_ft(finetuned: Dict[str, torch.Tensor], pretrained: Dict[str, torch.Tensor], finetuned_share: float,
            prefixes: Iterable[str] = PRETRAINED_PARAMETERS) -> Tuple[Dict[str, torch.Tensor], int]:
    """``finetuned`` with each floating-point entry under ``prefixes`` replaced by
    ``finetuned_share * finetuned + (1 - finetuned_share) * pretrained``.

    Returns the new state dict and how many entries were interpolated. Share 1 is the
    fine-tuned system, 0 Whisper's weights under the trained modules. An entry under the
    prefixes that ``pretrained`` lacks, or has in another shape, is refused: the two are
    not the same architecture.
    """
    if not 0.0 <= finetuned_share <= 1.0:
        raise ValueError(f"finetuned_share must be in [0, 1], got {finetuned_share}")
    prefixes = tuple(prefixes)
    merged, n_interpolated = {}, 0
    for name, value in finetuned.items():
        if not (name.startswith(prefixes) and torch.is_floating_point(value)):
            merged[name] = value
            continue
        if name not in pretrained:
            raise ValueError(f"the pretrained weights lack {name}: not the model the system was fine-tuned from")
        start = pretrained[name]
        if start.shape != value.shape:
            raise ValueError(f"{name} is {tuple(value.shape)} in the fine-tuned system and "
                             f"{tuple(start.shape)} in the pretrained one: not the same model")
        merged[name] = torch.lerp(start.to(value.dtype), value, finetuned_share)
        n_interpolated += 1
    if n_interpolated == 0:
        raise ValueError(f"no parameter of the fine-tuned system is under {prefixes}: nothing pretrained to interpolate")
    return merged, n_interpolated


def wise_ft_experiment(asr_exp: Union[str, Path], model_file: str, finetuned_share: float,
                       output: Union[str, Path], parts: Iterable[str] = tuple(PARTS)) -> int:
    """Write ``output``: ``<asr_exp>/<model_file>`` interpolated with the Whisper weights its
    ``config.yaml`` builds before training (``build_model`` loads Whisper's checkpoint; a
    phase-1 ``--init_param`` is not applied, so the start is Whisper as released).

    ``parts``: which of Whisper's parts (``PARTS``) are interpolated; the others stay as
    trained. Returns how many entries were interpolated. ``output`` decodes like any model
    file of the experiment (``asr.sh --inference_model``)."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"parts must be some of {sorted(PARTS)}, got {list(parts)}")
    asr_exp = Path(asr_exp)
    finetuned_file = asr_exp / model_file
    if not finetuned_file.is_file():
        raise FileNotFoundError(f"{finetuned_file} does not exist: train the system first (stage 5)")
    pretrained, _ = build_model_from_file(asr_exp / "config.yaml", None)
    finetuned = torch.load(finetuned_file, map_location="cpu", weights_only=True)
    merged, n = wise_ft(finetuned, pretrained.state_dict(), finetuned_share, [PARTS[p] for p in parts])
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(merged, output)
    logging.info(f"{output}: {n} of Whisper's entries at {finetuned_share:g} x {finetuned_file} + "
                 f"{1 - finetuned_share:g} x Whisper's")
    return n
