"""DiffASRTask: registries, data names and every shipped training config."""

import logging
from pathlib import Path

import pytest
import torch

import yaml

from diffasr.espnet2.conditioning import FiLMConditioner
from diffasr.espnet2.decoder import DiffusionTransformerDecoder
from diffasr.espnet2.model import DiffusionASRModel
from diffasr.espnet2.target_speaker import TargetSpeakerESPnetModel, TargetSpeakerMaskCTCModel
from diffasr.espnet2.task import DiffASRTask
from diffasr.espnet2.whisper_decoder import WhisperARDecoder, WhisperDiffusionDecoder
from diffasr.whisper.tokenizer import whisper_token_list

TUNING = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1/conf/tuning"
CONFIGS = sorted(p.name for p in TUNING.glob("train_*.yaml"))
TOKENS = ["<blank>", "<unk>", "\u2581A", "\u2581B", "C", "<mask>", "<sos/eos>"]
# system: (model class, speaker conditioner class, reads the enrollment audio)
EXPECTED = {
    "diffusion_conformer": (DiffusionASRModel, FiLMConditioner, False),
    "diffusion_conformer_nospk": (DiffusionASRModel, type(None), False),
    "ar_conformer": (TargetSpeakerESPnetModel, FiLMConditioner, False),
    "maskctc_conformer": (TargetSpeakerMaskCTCModel, FiLMConditioner, False),
    "diffusion_whisper": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_nospk": (DiffusionASRModel, type(None), False),
    "ar_whisper": (TargetSpeakerESPnetModel, type(None), True),
}
VARIANTS = {  # measured once, no tiny version
    "diffusion_whisper_film": (DiffusionASRModel, FiLMConditioner, False),
    "diffusion_whisper_memory": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_randinit": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_smalldec": (DiffusionASRModel, type(None), True),
}


def token_list_of(config: str):
    with open(TUNING / config) as f:
        return whisper_token_list() if yaml.safe_load(f).get("token_type") == "whisper_en" else list(TOKENS)


def build(config: str):
    args = DiffASRTask.get_parser().parse_args(["--config", str(TUNING / config), "--token_list", "x"])
    args.token_list = token_list_of(config)
    return DiffASRTask.build_model(args), args


def test_every_system_has_a_default_and_a_tiny_config():
    for system in EXPECTED:
        assert f"train_{system}.yaml" in CONFIGS and f"train_{system}_tiny.yaml" in CONFIGS
    assert {c[len("train_"):-len(".yaml")].removesuffix("_tiny") for c in CONFIGS} == set(EXPECTED) | set(VARIANTS)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_builds_the_intended_model(config):
    model, args = build(config)
    system = config[len("train_"):-len(".yaml")].removesuffix("_tiny")
    model_class, conditioner_class, reads_audio = {**EXPECTED, **VARIANTS}[system]
    assert type(model) is model_class
    assert type(model.spk_conditioner) is conditioner_class
    assert model.needs_enrollment_audio() == reads_audio
    assert args.token_list == token_list_of(config)  # the caller's token list is left alone
    assert args.grad_clip > 0
    if "whisper" in system:
        # Every whisper system shares one frozen encoder, so they share one cache.
        assert args.encoder == "whisper" and args.encoder_conf["frozen_layers"] == 4
        assert all(not p.requires_grad for p in model.encoder.whisper.parameters())
        expected_decoder = WhisperARDecoder if system.startswith("ar") else WhisperDiffusionDecoder
        if system.endswith("smalldec"):
            expected_decoder = DiffusionTransformerDecoder
        assert type(model.decoder) is expected_decoder


def _step_batch(whisper_tokens: bool) -> dict:
    if whisper_tokens:
        text = torch.tensor([[1000, 2000, 3000], [4000, -1, -1]])
    else:
        text = torch.tensor([[2, 3, 4], [3, -1, -1]])
    return dict(
        speech=torch.randn(2, 8000), speech_lengths=torch.tensor([8000, 6000]),
        text=text, text_lengths=torch.tensor([3, 1]),
        enroll_embed=torch.randn(2, 192), enroll_embed_lengths=torch.tensor([192, 192]),
        enroll_speech=torch.randn(2, 7000), enroll_speech_lengths=torch.tensor([7000, 5000]),
        utt_id=["a", "b"],
    )


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.endswith("_tiny.yaml")])
def test_tiny_config_trains_a_step_with_every_enrollment_input_present(config):
    model, _ = build(config)
    loss, stats, weight = model(**_step_batch(token_list_of(config) != TOKENS))
    loss.backward()
    assert torch.isfinite(loss) and "loss" in stats
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained if p.requires_grad and p.dim() > 1
                           and p is not getattr(model.ctc, "ctc_lo", None))


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.endswith("_tiny.yaml")])
def test_a_conditioned_model_refuses_a_batch_without_its_enrollment(config):
    model, _ = build(config)
    batch = _step_batch(token_list_of(config) != TOKENS)
    needed = ["enroll_speech"] if model.needs_enrollment_audio() else []
    needed += ["enroll_embed"] if model.spk_conditioner is not None else []
    for name in needed:
        partial = {k: v for k, v in batch.items() if not k.startswith(name)}
        with pytest.raises(ValueError, match=f"no {name} was given"):
            model(**partial)


def test_registries_extend_espnet_without_patching_it():
    from espnet2.tasks import asr

    names = {c.name: c for c in DiffASRTask.class_choices_list}
    assert {"espnet", "maskctc", "diffusion"} <= set(names["model"].classes)
    assert {"transformer", "mlm", "diffusion", "whisper_diffusion", "whisper_ar"} <= set(names["decoder"].classes)
    assert names["encoder"].get_class("whisper").__module__ == "diffasr.espnet2.whisper_encoder"
    assert set(names["spk_conditioner"].classes) == {"film", "prepend"}
    assert None in names["spk_conditioner"].choices()
    assert "diffusion" not in asr.model_choices.classes
    assert "diffusion" not in asr.decoder_choices.classes
    assert asr.encoder_choices.get_class("whisper").__module__.startswith("espnet2.")


def test_enrollment_inputs_are_optional_inputs():
    for name in ("enroll_embed", "enroll_speech"):
        assert name in DiffASRTask.optional_data_names(train=True)
        assert name in DiffASRTask.optional_data_names(train=False, inference=True)
    assert DiffASRTask.required_data_names(train=True) == ("speech", "text")


def test_diffusion_model_needs_the_diffusion_decoder():
    args = DiffASRTask.get_parser().parse_args(
        ["--config", str(TUNING / "train_diffusion_conformer_tiny.yaml"), "--token_list", "x",
         "--decoder", "transformer"]
    )
    args.token_list = list(TOKENS)
    with pytest.raises(ValueError, match="goes with decoder: diffusion or whisper_diffusion"):
        DiffASRTask.build_model(args)


# ---- egs/librispeech/asr1: single-speaker configs
LIBRISPEECH_TUNING = TUNING.parents[3] / "librispeech/asr1/conf/tuning"
LIBRISPEECH_CONFIGS = sorted(p.name for p in LIBRISPEECH_TUNING.glob("train_*.yaml"))


@pytest.mark.parametrize("config", LIBRISPEECH_CONFIGS)
def test_librispeech_configs_build_single_speaker_models(config):
    path = LIBRISPEECH_TUNING / config
    args = DiffASRTask.get_parser().parse_args(["--config", str(path), "--token_list", "x"])
    with open(path) as f:
        whisper = yaml.safe_load(f).get("token_type") == "whisper_en"
    args.token_list = whisper_token_list() if whisper else list(TOKENS)
    model = DiffASRTask.build_model(args)
    system = config[len("train_"):-len(".yaml")].removesuffix("_tiny").removesuffix("_ls100")
    assert type(model) is (DiffusionASRModel if system.startswith("diffusion") else TargetSpeakerESPnetModel)
    assert model.spk_conditioner is None and not model.needs_enrollment_audio()
    if config.endswith("_ls100.yaml"):  # ESPnet's LibriSpeech-100 conformer size
        assert (args.encoder_conf["num_blocks"], model.encoder.output_size()) == (12, 256)
        assert args.max_epoch == 70 and args.use_amp
    if config.endswith("_tiny.yaml"):  # trains a step on audio and text alone
        batch = {k: v for k, v in _step_batch(whisper).items() if not k.startswith("enroll")}
        loss, stats, _ = model(**batch)
        assert torch.isfinite(loss) and "loss" in stats
    assert {c.removesuffix("_tiny.yaml").removesuffix("_ls100.yaml").removesuffix(".yaml")
            for c in LIBRISPEECH_CONFIGS} == {"train_ar_whisper", "train_diffusion_whisper", "train_ar_conformer",
                                              "train_diffusion_conformer"}


def test_resume_loads_a_whole_checkpoint_and_sets_aside_one_cut_short(tmp_path, caplog):
    from espnet2.train.reporter import Reporter

    def parts(module):
        return module, Reporter(), [torch.optim.SGD(module.parameters(), lr=0.1)], [None], None

    trained = torch.nn.Linear(3, 2)
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"model": trained.state_dict(), "reporter": Reporter().state_dict(),
                "optimizers": [torch.optim.SGD(trained.parameters(), lr=0.1).state_dict()],
                "schedulers": [None], "scaler": None}, checkpoint)
    whole = checkpoint.read_bytes()
    resumed = torch.nn.Linear(3, 2)
    DiffASRTask.trainer.resume(checkpoint, *parts(resumed))
    assert torch.equal(resumed.weight, trained.weight)

    checkpoint.write_bytes(whole[: len(whole) // 2])  # killed while torch.save wrote it
    fresh = torch.nn.Linear(3, 2)
    initial = fresh.weight.clone()
    with caplog.at_level(logging.WARNING):
        DiffASRTask.trainer.resume(checkpoint, *parts(fresh))
    assert not checkpoint.exists()
    assert (tmp_path / "checkpoint.pth.unreadable").read_bytes() == whole[: len(whole) // 2]
    assert torch.equal(fresh.weight, initial)
    assert f"{checkpoint} is incomplete: the run was stopped while saving it" in caplog.text


def test_resume_writes_again_the_epoch_model_a_kill_cut_short(tmp_path, caplog):
    from espnet2.train.reporter import Reporter

    trained = torch.nn.Linear(3, 2)
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"model": trained.state_dict(), "reporter": Reporter(epoch=1).state_dict(),
                "optimizers": [torch.optim.SGD(trained.parameters(), lr=0.1).state_dict()],
                "schedulers": [None], "scaler": None}, checkpoint)
    torch.save(trained.state_dict(), tmp_path / "1epoch.pth")
    (tmp_path / "1epoch.pth").write_bytes((tmp_path / "1epoch.pth").read_bytes()[:100])  # killed mid-write
    resumed, reporter = torch.nn.Linear(3, 2), Reporter()
    with caplog.at_level(logging.WARNING):
        DiffASRTask.trainer.resume(checkpoint, resumed, reporter, [torch.optim.SGD(resumed.parameters(), lr=0.1)],
                                   [None], None)
    assert reporter.get_epoch() == 1
    rewritten = torch.load(tmp_path / "1epoch.pth", weights_only=True)
    assert torch.equal(rewritten["weight"], trained.weight) and torch.equal(rewritten["bias"], trained.bias)
    assert "1epoch.pth was cut short" in caplog.text
