"""Config overlays: one size (e.g. the CI's tiny one) applied over the real configs.

An overlay file has one section per kind of config it sizes: ``whisper`` and
``conformer`` for training configs (chosen by the config's ``encoder``), ``speaker`` for
stage 3's speaker-encoder config.  A section is merged into the config key by key, nested
mappings recursively; a section's value replaces the config's (lists included)::

    whisper:
      batch_size: 4
      encoder_conf: {adapter_size: 64}

A config kind the overlay has no section for is an error, so a new family of configs
cannot silently run at full size under ``--overlay conf/tiny.yaml``.  (A dozen lines of
recursion: OmegaConf's merge would add typed nodes and a dependency for the same thing.)
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SPEAKER = "speaker"


class OverlayError(ValueError):
    """An overlay that does not fit the config it is applied to."""


def merge(base: dict, section: dict) -> dict:
    """``base`` with ``section`` merged in (nested mappings recursively); neither is changed."""
    merged = copy.deepcopy(base)
    for key, value in section.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def section_of(config: dict, kind: str) -> str:
    """The overlay section a config takes: ``speaker``, or a training config's encoder."""
    if kind == SPEAKER:
        return SPEAKER
    encoder = config.get("encoder")
    if not isinstance(encoder, str):
        raise OverlayError("a training config without 'encoder: <name>' (whisper, conformer, ...)")
    return encoder


def apply_overlay(config_path: str | Path, overlay_path: str | Path, kind: str = "train") -> dict:
    """The config at ``config_path`` with its section of the overlay at ``overlay_path``."""
    config = _load(config_path)
    overlay = _load(overlay_path)
    try:
        name = section_of(config, kind)
    except OverlayError as e:
        raise OverlayError(f"{config_path}: {e}") from None
    section = overlay.get(name)
    if not isinstance(section, dict):
        raise OverlayError(
            f"{overlay_path} has no '{name}:' section for {config_path} "
            f"(its sections: {', '.join(sorted(overlay)) or 'none'})")
    return merge(config, section)


def write_overlaid(config_path: str | Path, overlay_path: str | Path, output_path: str | Path,
                   kind: str = "train") -> Path:
    """Write the overlaid config (with a header naming both files) and return its path."""
    merged = apply_overlay(config_path, overlay_path, kind)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# {config_path} with the overlay {overlay_path} (written by asr.sh --overlay; do not edit)\n"
    text = header + yaml.safe_dump(merged, sort_keys=False)
    if output_path.exists() and output_path.read_text(encoding="utf-8") == text:
        return output_path  # unchanged: keep the file (and its time) that later stages recorded
    tmp = output_path.with_suffix(output_path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output_path)
    return output_path


def _load(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise OverlayError(f"{path} does not exist") from None
    except yaml.YAMLError as e:
        raise OverlayError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise OverlayError(f"{path}: a mapping of keys was expected")
    return data
