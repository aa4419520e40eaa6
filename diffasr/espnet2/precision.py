"""Mixed precision of a training step on CPU (``model_conf train_autocast``).

ESPnet's ``--use_amp`` autocasts on CUDA only.  A CPU with bf16 matrix instructions
(AVX512-BF16, AMX) multiplies the decoder's shapes 2-3x faster in bf16 than in fp32,
so ``train_autocast: bf16`` runs the model's forward pass under ``torch.autocast("cpu",
bfloat16)``: matrix products in bf16, the ops autocast keeps in fp32 (softmax, losses,
norms) in fp32, parameters, gradients and the optimiser in fp32.  The backward pass
follows the dtypes the forward chose, as torch recommends (it is not itself autocast).
On a CPU without bf16 instructions, and on other devices, the step stays in fp32.

    >>> check_train_autocast("fp16")
    Traceback (most recent call last):
    ...
    ValueError: model_conf train_autocast must be one of ('none', 'bf16'), got 'fp16'
"""

import functools
import logging

import torch

TRAIN_AUTOCAST = ("none", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic, where bf16 autocast pays off."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe() for probe in probes if probe is not None)


def check_train_autocast(value: str) -> str:
    if value not in TRAIN_AUTOCAST:
        raise ValueError(f"model_conf train_autocast must be one of {TRAIN_AUTOCAST}, got {value!r}")
    if value == "bf16" and not cpu_has_bf16():
        logging.warning("model_conf train_autocast: bf16, but this CPU has no bf16 instructions: "
                        "training on CPU stays in fp32")
    return value


def forward_autocast(mode: str, like: torch.Tensor):
    """The autocast context of a forward pass on ``like``'s device."""
    enabled = mode == "bf16" and like.device.type == "cpu" and cpu_has_bf16()
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)
