"""Weight-space ensembling of a fine-tuned system with the Whisper it started from (WiSE-FT).

Wortsman et al. (2022, "Robust fine-tuning of zero-shot models") found that a linear
interpolation between a zero-shot model's weights and the same model fine-tuned on a
narrow set keeps most of the fine-tuning's gain in its domain and much of the zero-shot
model's robustness outside it: no training, one pass over the weights. Here the narrow set
is the embedded corpus (synthesized voices) and "outside" is real speech (issue #36).

Only Whisper's own weights are interpolated (``PRETRAINED_PARAMETERS``: the encoder's
Whisper layers, a Whisper decoder), each part at its own share; the modules the system
added (the enrollment's, the adapter, the heads) have no pretrained value and stay as
trained. ``diffasr.espnet2.builder.build_model_from_file`` applies it when a model is
loaded (decode options ``wise_ft_encoder``, ``wise_ft_decoder``).
"""

from typing import Dict, Mapping, Tuple

import torch

# Whisper's own weights, by parameter name: the encoder's Whisper layers and a Whisper
# decoder's (``diffasr.espnet2.task`` gives them a learning rate of their own,
# --pretrained_lr_scale, for the same reason: a narrow corpus pulls them away from what
# Whisper read well).
PRETRAINED_PARAMETERS = ("encoder.whisper.", "decoder.decoder.")
# The same by part: {"encoder": "encoder.whisper.", "decoder": "decoder.decoder."}
PARTS = {prefix.split(".")[0]: prefix for prefix in PRETRAINED_PARAMETERS}


def pretrained_part(name: str):
    """The Whisper part (``PARTS``) a parameter name belongs to, or None."""
    return next((part for part, prefix in PARTS.items() if name.startswith(prefix)), None)


def wise_ft(finetuned: Mapping[str, torch.Tensor], pretrained: Mapping[str, torch.Tensor],
            shares: Mapping[str, float]) -> Tuple[Dict[str, torch.Tensor], Dict[str, int]]:
    """``finetuned`` with each floating-point entry of a part in ``shares`` replaced by
    ``share * finetuned + (1 - share) * pretrained`` (share 1: as trained, 0: Whisper's).

    Returns the new state dict and how many entries of each part were interpolated (0: the
    system has no such Whisper part, e.g. a conformer). An entry that ``pretrained`` lacks
    or has in another shape is refused: not the same model.
    """
    unknown = sorted(set(shares) - set(PARTS))
    if unknown:
        raise ValueError(f"WiSE-FT parts are {sorted(PARTS)}, got {unknown}")
    for part, share in shares.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the trained share of Whisper's {part} must be in [0, 1], got {share}")
    merged, counts = {}, {part: 0 for part in shares}
    for name, value in finetuned.items():
        part = pretrained_part(name)
        if part not in shares or not torch.is_floating_point(value):
            merged[name] = value
            continue
        if name not in pretrained:
            raise ValueError(f"the pretrained weights lack {name}: not the model the system was fine-tuned from")
        start = pretrained[name]
        if start.shape != value.shape:
            raise ValueError(f"{name} is {tuple(value.shape)} in the fine-tuned system and "
                             f"{tuple(start.shape)} in the pretrained one: not the same model")
        merged[name] = torch.lerp(start.to(value.dtype), value, shares[part])
        counts[part] += 1
    return merged, counts
