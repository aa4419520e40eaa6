"""Decode options: one declaration (dataclasses) read by the model, Speech2Text, argparse and YAML."""

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import yaml

from diffasr.api import load_decode_config
from diffasr.bin import asr_inference
from diffasr.bin.asr_inference import get_parser
from diffasr.diffusion import DeliberationOptions, DiffusionOptions
from diffasr.espnet2.model import DiffusionASRModel
from diffasr.inference import DecodeOptions, Speech2Text
from diffasr.inference.options import GROUPS, option_names, own_fields, pop_decode_options

ROOT = Path(__file__).resolve().parents[1]
DECODE_CONFIGS = sorted(ROOT.glob("egs/*/asr1/conf/decode/*.yaml"))


def test_every_option_is_declared_by_exactly_one_dataclass():
    declared = [f.name for cls, _ in GROUPS.values() for f in own_fields(cls)]
    assert len(declared) == len(set(declared)), sorted(n for n in declared if declared.count(n) > 1)
    # steps and canvas_decode_margin are the sampler's: both diffusion modes inherit them.
    assert {"steps", "canvas_decode_margin"} <= {f.name for f in dataclasses.fields(DeliberationOptions)}
    assert option_names()["steps"].__name__ == "SamplerOptions"


def test_the_command_line_is_generated_from_the_dataclasses():
    parser = get_parser()
    actions = {a.dest: a for a in parser._actions}
    for cls, _ in GROUPS.values():
        for f in own_fields(cls):
            action = actions[f.name]
            assert action.default == f.default, f.name
            assert action.help == f.metadata["help"], f.name
            if f.metadata.get("choices"):
                assert set(f.metadata["choices"]) <= set(action.choices), f.name
    # bin/ declares none of them itself.
    source = (ROOT / "diffasr/bin/asr_inference.py").read_text()
    assert not [name for name in option_names() if f'"--{name}"' in source]


def test_command_line_values_reach_the_dataclasses():
    args = vars(get_parser().parse_args([
        "--output_dir", "o", "--data_path_and_name_and_type", "w.scp,speech,sound", "--asr_train_config", "c",
        "--steps", "4", "--block_length", "none", "--masking", "confidence_guided",
        "--deliberation_threshold", "0.4", "--beam_size", "3", "--decode_mode", "deliberation",
    ]))
    options = pop_decode_options(args)
    assert (options.diffusion.steps, options.deliberation.steps) == (4, 4)
    assert options.diffusion.block_length is None
    assert (options.deliberation.masking, options.deliberation.deliberation_threshold) == ("confidence_guided", 0.4)
    assert options.beam_search.beam_size == 3 and options.recognizer.decode_mode == "deliberation"
    assert "steps" not in args and args["output_dir"] == "o"  # loop options stay for inference()


def test_model_and_speech2text_take_the_dataclasses_not_their_fields():
    names = set(option_names())
    for method in (DiffusionASRModel.diffusion_decode, DiffusionASRModel.deliberation_decode, Speech2Text.__init__):
        parameters = set(inspect.signature(method).parameters)
        assert not parameters & names, (method.__qualname__, parameters & names)


@pytest.mark.parametrize("config", DECODE_CONFIGS, ids=lambda p: f"{p.parts[-5]}/{p.name}")
def test_every_decode_config_holds_only_declared_options(config):
    # Valid YAML as written: the per-set placeholders live inside strings (stage 6 fills them).
    options = yaml.safe_load(config.read_text()) or {}
    parsed = DecodeOptions.from_flat(options, str(config)).flat()
    assert {k: parsed[k] for k in options} == options


def test_a_misspelt_option_names_the_file_and_the_close_names(tmp_path):
    with pytest.raises(ValueError, match=r"decode_x\.yaml: unknown decode option 'step' \(did you mean 'steps'"):
        DecodeOptions.from_flat({"step": 4}, str(tmp_path / "decode_x.yaml"))
    with pytest.raises(ValueError, match=r"req: remasking must be one of \('low_confidence', 'random'\)"):
        DecodeOptions.from_flat({"remasking": "lowest"}, "req")
    with pytest.raises(ValueError, match="confidence_guided needs deliberation_threshold"):
        DecodeOptions.from_flat({"masking": "confidence_guided"}, "req")


RENAMED_MESSAGE = ("decode option 'canvas_margin' was renamed 'canvas_decode_margin' (the decode margin; "
                   "model_conf canvas_train_margin is the training one)")


def test_the_old_name_canvas_margin_is_refused_naming_the_file_and_the_new_name(tmp_path, capsys):
    decode_yaml = tmp_path / "decode_x.yaml"
    decode_yaml.write_text("steps: 4\ncanvas_margin: 2\n")
    # a decode config read by the API (and the benchmarks)
    with pytest.raises(ValueError, match=re.escape(f"{decode_yaml}: {RENAMED_MESSAGE}")):
        load_decode_config(decode_yaml)
    # the same config given to stage 6 (--config), where ESPnet's parser reads it; a null
    # value too (the key alone says that the file was written for the old name)
    required = ["--output_dir", str(tmp_path / "o"), "--data_path_and_name_and_type", "w.scp,speech,sound",
                "--asr_train_config", "c"]
    for text in ("steps: 4\ncanvas_margin: 2\n", "canvas_margin: null\n"):
        decode_yaml.write_text(text)
        with pytest.raises(ValueError, match=re.escape(f"{decode_yaml}: {RENAMED_MESSAGE}")):
            asr_inference.main(required + ["--config", str(decode_yaml)])
    # the old flag on stage 6's command line (--inference_args)
    with pytest.raises(SystemExit):
        get_parser().parse_args(required + ["--canvas_margin", "2"])
    assert "--canvas_margin was renamed --canvas_decode_margin (the decode margin" in capsys.readouterr().err
    # a request (API keywords)
    with pytest.raises(ValueError, match=re.escape(f"request: {RENAMED_MESSAGE}")):
        DecodeOptions.from_flat({"canvas_margin": 2}, "request")


def test_the_new_name_canvas_decode_margin_reaches_both_diffusion_modes(tmp_path):
    decode_yaml = tmp_path / "decode_x.yaml"
    decode_yaml.write_text("canvas_decode_margin: 2\n")
    args = vars(get_parser().parse_args(["--output_dir", "o", "--data_path_and_name_and_type", "w.scp,speech,sound",
                                         "--asr_train_config", "c", "--config", str(decode_yaml)]))
    options = pop_decode_options(args, args.pop("config"))
    assert (options.diffusion.canvas_decode_margin, options.deliberation.canvas_decode_margin) == (2, 2)
    assert "canvas_margin" not in args  # the hidden old name does not reach inference()


def test_flat_round_trip_keeps_every_value():
    options = DecodeOptions(diffusion=DiffusionOptions(steps=3, remasking="random", canvas="fixed"),
                            deliberation=DeliberationOptions(steps=3, mask_ratio=0.5))
    assert DecodeOptions.from_flat(options.flat()) == options


@pytest.mark.parametrize("options, message", [
    (dict(canvas_decode_margin=-1), "canvas_decode_margin must be >= 0"),
    (dict(candidates=0), "candidates must be >= 1"),
    (dict(canvas_length=0), "canvas_length must be >= 1"),
    (dict(block_length=0), "block_length must be >= 1"),
    (dict(end_commit="first"), "end_commit must be one of"),
])
def test_a_canvas_option_out_of_range_is_refused_by_its_declaration(options, message):
    with pytest.raises(ValueError, match=message):
        DiffusionOptions(**options)
