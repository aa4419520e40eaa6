"""DiffASRTask: registries, data names and every shipped training config."""

from pathlib import Path

import pytest
import torch

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.maskctc_model import MaskCTCModel

from diffasr.espnet2.conditioning import FiLMConditioner
from diffasr.espnet2.model import DiffusionASRModel
from diffasr.espnet2.task import DiffASRTask

TUNING = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1/conf/tuning"
CONFIGS = sorted(p.name for p in TUNING.glob("train_*.yaml"))
TOKENS = ["<blank>", "<unk>", "\u2581A", "\u2581B", "C", "<mask>", "<sos/eos>"]
EXPECTED = {
    "diffusion_conformer": (DiffusionASRModel, FiLMConditioner),
    "diffusion_conformer_nospk": (DiffusionASRModel, type(None)),
    "ar_conformer": (ESPnetASRModel, None),
    "maskctc_conformer": (MaskCTCModel, None),
}


def build(config: str):
    args = DiffASRTask.get_parser().parse_args(["--config", str(TUNING / config), "--token_list", "x"])
    args.token_list = list(TOKENS)
    return DiffASRTask.build_model(args), args


def test_every_system_has_a_default_and_a_tiny_config():
    for system in EXPECTED:
        assert f"train_{system}.yaml" in CONFIGS and f"train_{system}_tiny.yaml" in CONFIGS


@pytest.mark.parametrize("config", CONFIGS)
def test_config_builds_the_intended_model(config):
    model, args = build(config)
    system = config[len("train_"):-len(".yaml")].removesuffix("_tiny")
    model_class, conditioner_class = EXPECTED[system]
    assert type(model) is model_class
    if conditioner_class is not None:
        assert type(model.spk_conditioner) is conditioner_class
    assert args.token_list == TOKENS  # the caller's token list is left alone
    assert args.grad_clip > 0


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.endswith("_tiny.yaml")])
def test_tiny_config_trains_a_step_with_enroll_embed_present(config):
    model, _ = build(config)
    batch = dict(
        speech=torch.randn(2, 8000), speech_lengths=torch.tensor([8000, 6000]),
        text=torch.tensor([[2, 3, 4], [3, -1, -1]]), text_lengths=torch.tensor([3, 1]),
        enroll_embed=torch.randn(2, 192), enroll_embed_lengths=torch.tensor([192, 192]),
        utt_id=["a", "b"],
    )
    loss, stats, weight = model(**batch)
    loss.backward()
    assert torch.isfinite(loss) and "loss" in stats


def test_registries_extend_espnet_without_patching_it():
    from espnet2.tasks import asr

    names = {c.name: c for c in DiffASRTask.class_choices_list}
    assert {"espnet", "maskctc", "diffusion"} <= set(names["model"].classes)
    assert {"transformer", "mlm", "diffusion"} <= set(names["decoder"].classes)
    assert set(names["spk_conditioner"].classes) == {"film", "prepend"}
    assert None in names["spk_conditioner"].choices()
    assert "diffusion" not in asr.model_choices.classes
    assert "diffusion" not in asr.decoder_choices.classes


def test_enroll_embed_is_an_optional_input():
    assert "enroll_embed" in DiffASRTask.optional_data_names(train=True)
    assert "enroll_embed" in DiffASRTask.optional_data_names(train=False, inference=True)
    assert DiffASRTask.required_data_names(train=True) == ("speech", "text")


def test_diffusion_model_needs_the_diffusion_decoder():
    args = DiffASRTask.get_parser().parse_args(
        ["--config", str(TUNING / "train_diffusion_conformer_tiny.yaml"), "--token_list", "x",
         "--decoder", "transformer"]
    )
    args.token_list = list(TOKENS)
    with pytest.raises(ValueError, match="decoder: diffusion"):
        DiffASRTask.build_model(args)
