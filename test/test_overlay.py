"""Config overlays (diffasr/overlay.py, asr.sh --overlay) and decode-config rendering."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffasr.overlay import OverlayError, apply_overlay, merge, write_overlaid

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_CONF = ROOT / "egs/TEMPLATE/asr1/conf"


def test_merge_recurses_into_mappings_replaces_lists_and_leaves_both_inputs_alone():
    base = {"batch_size": 16, "encoder_conf": {"adapter_size": 256, "frozen_layers": 2}, "keep": [2, 3]}
    section = {"batch_size": 4, "encoder_conf": {"adapter_size": 64}, "keep": [2], "new": {"a": 1}}
    merged = merge(base, section)
    assert merged == {"batch_size": 4, "encoder_conf": {"adapter_size": 64, "frozen_layers": 2}, "keep": [2],
                      "new": {"a": 1}}
    assert base["encoder_conf"]["adapter_size"] == 256 and section == {
        "batch_size": 4, "encoder_conf": {"adapter_size": 64}, "keep": [2], "new": {"a": 1}}
    merged["new"]["a"] = 2  # a copy, not the section's own mapping
    assert section["new"]["a"] == 1


def test_a_config_takes_the_section_of_its_encoder_or_the_speaker_section(tmp_path):
    overlay = tmp_path / "size.yaml"
    overlay.write_text("whisper: {batch_size: 4}\nconformer: {batch_size: 2}\nspeaker: {epochs: 1}\n")
    whisper, conformer, speaker = tmp_path / "w.yaml", tmp_path / "c.yaml", tmp_path / "s.yaml"
    whisper.write_text("encoder: whisper\nbatch_size: 16\n")
    conformer.write_text("encoder: conformer\nbatch_size: 16\n")
    speaker.write_text("epochs: 5\nbatch_size: 16\n")
    assert apply_overlay(whisper, overlay)["batch_size"] == 4
    assert apply_overlay(conformer, overlay)["batch_size"] == 2
    assert apply_overlay(speaker, overlay, "speaker") == {"epochs": 1, "batch_size": 16}


def test_a_config_the_overlay_has_no_section_for_is_refused_naming_both(tmp_path):
    overlay = tmp_path / "size.yaml"
    overlay.write_text("whisper: {batch_size: 4}\n")
    config = tmp_path / "train_x.yaml"
    config.write_text("encoder: branchformer\n")
    with pytest.raises(OverlayError, match=r"size\.yaml has no 'branchformer:' section for .*train_x\.yaml "
                                           r"\(its sections: whisper\)"):
        apply_overlay(config, overlay)
    config.write_text("batch_size: 3\n")
    with pytest.raises(OverlayError, match=r"train_x\.yaml: a training config without 'encoder: <name>'"):
        apply_overlay(config, overlay)


def test_the_overlaid_file_is_rewritten_only_when_it_changes(tmp_path):
    overlay, config, out = tmp_path / "o.yaml", tmp_path / "c.yaml", tmp_path / "out/c_o.yaml"
    overlay.write_text("whisper: {batch_size: 4}\n")
    config.write_text("encoder: whisper\nbatch_size: 16\n")
    write_overlaid(config, overlay, out)
    first = out.stat().st_mtime_ns
    write_overlaid(config, overlay, out)
    assert out.stat().st_mtime_ns == first  # a rerun keeps what later stages recorded
    overlay.write_text("whisper: {batch_size: 2}\n")
    write_overlaid(config, overlay, out)
    assert yaml.safe_load(out.read_text()) == {"encoder": "whisper", "batch_size": 2}


def test_the_tiny_overlay_shrinks_every_shipped_config_it_is_applied_to():
    tiny = TEMPLATE_CONF / "tiny.yaml"
    # (the _ls100 configs are LibriSpeech-100 on a GPU, sized in batch_bins: not run at the CI size)
    configs = sorted(c for c in ROOT.glob("egs/*/asr1/conf/tuning/train_*.yaml") if not c.stem.endswith("_ls100"))
    assert len(configs) == 10
    for config in configs:
        real = yaml.safe_load(config.read_text())
        small = apply_overlay(config, tiny)
        assert small["batch_size"] < real["batch_size"] and small["max_epoch"] <= 2, config
        assert {k: small[k] for k in ("encoder", "decoder", "model")} == {k: real[k] for k in ("encoder", "decoder", "model")}
    for config in sorted(ROOT.glob("egs/*/asr1/conf/spk/*.yaml")):
        real, small = yaml.safe_load(config.read_text()), apply_overlay(config, tiny, "speaker")
        assert small["epochs"] < real["epochs"] and small["loss"] == real["loss"], config


def render(tmp_path, config, *fields):
    out = tmp_path / "decode.yaml"
    run = subprocess.run([sys.executable, str(ROOT / "utils/render_decode_config.py"), str(config), str(out), *fields],
                         capture_output=True, text=True)
    return run, out


def test_a_decode_config_with_per_set_placeholders_is_valid_yaml_and_rendered_by_value(tmp_path):
    shipped = TEMPLATE_CONF / "decode/decode_diffusion_delib_ar_guided.yaml"
    assert "{ar_exp}" in yaml.safe_load(shipped.read_text())["deliberation_hyp"]
    run, out = render(tmp_path, shipped, "test_set=test_clean", "ar_exp=exp/asr_ar_whisper_tiny")
    assert run.returncode == 0, run.stderr
    rendered = yaml.safe_load(out.read_text())
    assert rendered["deliberation_hyp"] == "exp/asr_ar_whisper_tiny/decode_ar_beam10/test_clean/text"
    assert {k: v for k, v in rendered.items() if k != "deliberation_hyp"} == {
        k: v for k, v in yaml.safe_load(shipped.read_text()).items() if k != "deliberation_hyp"}
    odd = tmp_path / "odd.yaml"
    odd.write_text('deliberation_hyp: "{nowhere}/text"\n')
    run, _ = render(tmp_path, odd, "test_set=test")
    assert run.returncode != 0 and "odd.yaml: \"unknown placeholder(s) ['nowhere']" in run.stderr


def test_decode_configs_are_the_templates_shared_by_every_recipe():
    for recipe in ("librimix_target", "librispeech"):
        assert (ROOT / f"egs/{recipe}/asr1/conf/decode").resolve() == TEMPLATE_CONF / "decode"
        assert (ROOT / f"egs/{recipe}/asr1/conf/tiny.yaml").resolve() == TEMPLATE_CONF / "tiny.yaml"
