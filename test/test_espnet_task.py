"""DiffASRTask: registries, data names and every shipped training config and variant."""

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
from tiny_configs import tiny

RECIPE = Path(__file__).resolve().parents[1] / "egs/librimix_target/asr1"
TUNING = RECIPE / "conf/tuning"
CONFIGS = sorted(p.name for p in TUNING.glob("train_*.yaml"))
TOKENS = ["<blank>", "<unk>", "\u2581A", "\u2581B", "C", "<mask>", "<sos/eos>"]


def read_variants(path: Path) -> dict:
    """asr.sh's --asr_variants_file: {tag: (config, overrides)} from its '<tag> <config> <overrides>' lines."""
    variants = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            tag, config, *overrides = line.split()
            assert tag not in variants, f"{path}: {tag} is declared twice (asr.sh would take the first)"
            variants[tag] = (config, overrides)
    return variants


VARIANTS = read_variants(RECIPE / "conf/variants.txt")
# Every system of the recipe by its experiment name (exp/asr_<name>): the training options that make it.
SYSTEMS = {config[len("train_"):-len(".yaml")]: ["--config", str(TUNING / config)] for config in CONFIGS}
SYSTEMS.update({tag: ["--config", str(RECIPE / config), *overrides] for tag, (config, overrides) in VARIANTS.items()})
# system: (model class, speaker conditioner class, reads the enrollment audio)
EXPECTED = {  # each also at the CI size (conf/tiny.yaml over it: exp/asr_<name>_tiny)
    "diffusion_conformer": (DiffusionASRModel, FiLMConditioner, False),
    "diffusion_conformer_nospk": (DiffusionASRModel, type(None), False),
    "ar_conformer": (TargetSpeakerESPnetModel, FiLMConditioner, False),
    "maskctc_conformer": (TargetSpeakerMaskCTCModel, FiLMConditioner, False),
    "diffusion_whisper": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_nospk": (DiffusionASRModel, type(None), False),
    "ar_whisper": (TargetSpeakerESPnetModel, type(None), True),
}
MEASURED_ONCE = {  # not run at the CI size
    "diffusion_whisper_film": (DiffusionASRModel, FiLMConditioner, False),
    "diffusion_whisper_memory": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_randinit": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_smalldec": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_arw0": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_arw1": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_distill05": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_distill10": (DiffusionASRModel, type(None), True),
    "diffusion_whisper_plr01": (DiffusionASRModel, type(None), True),
}
# The CI size of each expected system: its config with the tiny overlay, its overrides kept.
SYSTEMS.update({f"{system}_tiny": ["--config", str(tiny(Path(SYSTEMS[system][1]))), *SYSTEMS[system][2:]]
                for system in EXPECTED})
# variant: what it changes in its config, as training parses the options
# The previous default's conditioning (the enrollment after all four frozen Whisper layers),
# which the variants measured once keep.
PREVIOUS_DEFAULT = {"encoder_conf.frozen_layers": 4, "model_conf.teacher_weight": 0.0,
                    "enrollment_lr_scale": 1.0, "model_conf.train_autocast": "none"}
DEFINED_BY = {
    "diffusion_whisper_nospk": {"encoder_conf.enrollment": "none", "enrollment_lr_scale": 1.0},
    "diffusion_conformer_nospk": {"spk_conditioner": None},
    "diffusion_whisper_film": {"encoder_conf.enrollment": "none", "spk_conditioner": "film",
                               "spk_conditioner_conf.embed_dim": 192, **PREVIOUS_DEFAULT},
    "diffusion_whisper_memory": {"encoder_conf.enrollment_in_output": True,
                                 **PREVIOUS_DEFAULT},
    "diffusion_whisper_randinit": {"decoder_conf.pretrained": False, "decoder_conf.freeze_embeddings": False,
                                   **PREVIOUS_DEFAULT},
    "diffusion_whisper_arw0": {"model_conf.ar_weight": 0.0},
    "diffusion_whisper_arw1": {"model_conf.ar_weight": 1.0},
    "diffusion_whisper_distill05": {"model_conf.distill_share": 0.5},
    "diffusion_whisper_distill10": {"model_conf.distill_share": 1.0},
    "diffusion_whisper_plr01": {"pretrained_lr_scale": 0.1},
}


def token_list_of(token_type: str):
    return whisper_token_list() if token_type == "whisper_en" else list(TOKENS)


def parse(options: list):
    return DiffASRTask.get_parser().parse_args([*options, "--token_list", "x"])


def build(system: str):
    args = parse(SYSTEMS[system])
    args.token_list = token_list_of(args.token_type)
    return DiffASRTask.build_model(args), args


def flat(options: dict, prefix: str = "") -> dict:
    """{"encoder_conf": {"enrollment": "none"}} -> {"encoder_conf.enrollment": "none"}"""
    out = {}
    for key, value in options.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def test_every_system_has_a_default_and_a_tiny_version():
    for system in EXPECTED:
        assert system in SYSTEMS and f"{system}_tiny" in SYSTEMS
    assert {system.removesuffix("_tiny") for system in SYSTEMS} == set(EXPECTED) | set(MEASURED_ONCE)
    # The tiny overlay shrinks the model and the run, and changes nothing that defines the system.
    for system in EXPECTED:
        full, small = flat(vars(parse(SYSTEMS[system]))), flat(vars(parse(SYSTEMS[f"{system}_tiny"])))
        assert small["batch_size"] < full["batch_size"] and small["max_epoch"] < full["max_epoch"], system
        for key in ("model", "encoder", "decoder", "spk_conditioner", "token_type", "encoder_conf.enrollment"):
            assert small.get(key) == full.get(key), (system, key)


def test_a_variant_names_its_own_experiment():
    assert not set(VARIANTS) & {config[len("train_"):-len(".yaml")] for config in CONFIGS}
    for tag, (config, overrides) in VARIANTS.items():
        # A shipped training config (conf/tuning/train_<system>.yaml, relative to the recipe as
        # asr.sh reads it), which the tag names: <system>_<what it varies>.
        assert Path(config).parent == Path("conf/tuning") and Path(config).name in CONFIGS, f"{tag}: {config}"
        system = Path(config).stem[len("train_"):]
        assert tag.startswith(system + "_"), f"{tag}: {config}"
        assert overrides, f"{tag} overrides nothing of {config}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_variant_is_its_config_but_for_what_defines_it(variant):
    config, overrides = VARIANTS[variant]
    base = flat(vars(parse(["--config", str(RECIPE / config)])))
    varied = flat(vars(parse(["--config", str(RECIPE / config), *overrides])))
    changed = {key: varied.get(key) for key in base.keys() | varied.keys() if base.get(key) != varied.get(key)}
    assert changed == DEFINED_BY[variant]


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_system_builds_the_intended_model(system):
    model, args = build(system)
    model_class, conditioner_class, reads_audio = {**EXPECTED, **MEASURED_ONCE}[system.removesuffix("_tiny")]
    assert type(model) is model_class
    assert type(model.spk_conditioner) is conditioner_class
    assert model.needs_enrollment_audio() == reads_audio
    assert args.token_list == token_list_of(args.token_type)  # the caller's token list is left alone
    assert args.grad_clip > 0
    # Its optimiser too: one group per learning-rate scale the system sets (--enrollment_lr_scale
    # needs enrollment modules to scale, --head_lr_scale the CTC and length heads,
    # --pretrained_lr_scale Whisper's weights).
    [optimizer] = DiffASRTask.build_optimizers(args, model)
    expected_groups = len({1.0, args.enrollment_lr_scale, args.head_lr_scale, args.pretrained_lr_scale})
    assert len(optimizer.param_groups) == expected_groups
    if "whisper" in system:
        # The default whisper systems share one frozen depth (one cache); the previous default's variants theirs.
        frozen = DEFINED_BY.get(system, {}).get("encoder_conf.frozen_layers", 2)
        assert args.encoder == "whisper" and args.encoder_conf["frozen_layers"] == frozen
        whisper = model.encoder.whisper
        assert all(not p.requires_grad for p in whisper.blocks[:frozen].parameters())
        assert all(p.requires_grad for p in whisper.blocks[frozen:].parameters())
        expected_decoder = WhisperARDecoder if system.startswith("ar") else WhisperDiffusionDecoder
        if system.endswith("smalldec"):
            expected_decoder = DiffusionTransformerDecoder
        assert type(model.decoder) is expected_decoder


def _step_batch(whisper_tokens: bool, activity: bool = False, teacher: bool = False) -> dict:
    """Two examples of every input; with ``activity``, stage 1's per-frame labels of where the
    target speaks (50 frames a second) that the activity loss trains on; with ``teacher``, the
    clean-target teacher's frames (Whisper tiny's 384 features) and the interferers'."""
    labels = {}
    if activity:
        labels = dict(target_activity=torch.randint(0, 2, (2, 25)).float(), target_activity_lengths=torch.tensor([25, 19]))
    if teacher:
        labels.update(teacher=torch.randn(2, 25, 384), teacher_lengths=torch.tensor([25, 19]),
                      teacher_others=torch.randn(2, 25, 768), teacher_others_lengths=torch.tensor([25, 19]))
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
        **labels,
    )


@pytest.mark.parametrize("system", [s for s in sorted(SYSTEMS) if s.endswith("_tiny")])
def test_tiny_system_trains_a_step_with_every_enrollment_input_present(system):
    model, args = build(system)
    activity = args.model_conf.get("activity_weight", 0.0) > 0
    teacher = args.model_conf.get("teacher_weight", 0.0) > 0
    loss, stats, weight = model(**_step_batch(args.token_type == "whisper_en", activity, teacher))
    loss.backward()
    assert torch.isfinite(loss) and "loss" in stats
    assert ("loss_activity" in stats) == activity and ("loss_teacher" in stats) == teacher
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained if p.requires_grad and p.dim() > 1
                           and p is not getattr(model.ctc, "ctc_lo", None))


@pytest.mark.parametrize("system", ["ar_whisper_tiny", "diffusion_whisper_tiny"])
def test_phase_one_trains_the_encoder_on_the_teacher_alone_without_a_decoder_pass(system):
    model, args = build(system)
    model.teacher_only = True  # model_conf teacher_only: phase 1
    loss, stats, _ = model(**_step_batch(True, args.model_conf.get("activity_weight", 0.0) > 0, teacher=True))
    loss.backward()
    assert float(loss) == pytest.approx(float(stats["loss_teacher"] * model.teacher_weight
                                              + stats.get("loss_activity", 0.0) * model.activity_weight), rel=1e-4)
    assert not {"loss_att", "loss_diffusion", "loss_ctc", "loss_ar"} & set(stats)
    assert all(p.grad is None for p in model.decoder.parameters())
    whisper_top = [p for n, p in model.encoder.named_parameters() if n.startswith("whisper.blocks.3.")]
    assert whisper_top and all(p.grad is not None and p.grad.abs().sum() > 0 for p in whisper_top)
    # feature follows is a validation figure: with the interferers' teachers, in eval mode only
    assert "feature_follows" not in stats
    model.eval()
    with torch.no_grad():
        _, stats, _ = model(**_step_batch(True, args.model_conf.get("activity_weight", 0.0) > 0, teacher=True))
    assert 0.0 <= float(stats["feature_follows"]) <= 1.0


@pytest.mark.parametrize("system", [s for s in sorted(SYSTEMS) if s.endswith("_tiny")])
def test_a_conditioned_model_refuses_a_batch_without_its_enrollment(system):
    model, args = build(system)
    batch = _step_batch(args.token_type == "whisper_en", args.model_conf.get("activity_weight", 0.0) > 0,
                        args.model_conf.get("teacher_weight", 0.0) > 0)
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
        ["--config", str(tiny(TUNING / "train_diffusion_conformer.yaml")), "--token_list", "x",
         "--decoder", "transformer"]
    )
    args.token_list = list(TOKENS)
    with pytest.raises(ValueError, match="goes with decoder: diffusion or whisper_diffusion"):
        DiffASRTask.build_model(args)


# ---- egs/librispeech/asr1: single-speaker configs
LIBRISPEECH_TUNING = TUNING.parents[3] / "librispeech/asr1/conf/tuning"
LIBRISPEECH_CONFIGS = sorted(p.name for p in LIBRISPEECH_TUNING.glob("train_*.yaml"))
# Each also at the CI size (the tiny overlay), which trains a step on audio and text alone.
LIBRISPEECH_SIZES = [(config, False) for config in LIBRISPEECH_CONFIGS] + [
    (config, True) for config in LIBRISPEECH_CONFIGS if not config.endswith("_ls100.yaml")]


@pytest.mark.parametrize("config,at_tiny_size", LIBRISPEECH_SIZES)
def test_librispeech_configs_build_single_speaker_models(config, at_tiny_size):
    path = tiny(LIBRISPEECH_TUNING / config) if at_tiny_size else LIBRISPEECH_TUNING / config
    args = DiffASRTask.get_parser().parse_args(["--config", str(path), "--token_list", "x"])
    with open(path) as f:
        whisper = yaml.safe_load(f).get("token_type") == "whisper_en"
    args.token_list = whisper_token_list() if whisper else list(TOKENS)
    model = DiffASRTask.build_model(args)
    system = config[len("train_"):-len(".yaml")].removesuffix("_ls100")
    assert type(model) is (DiffusionASRModel if system.startswith("diffusion") else TargetSpeakerESPnetModel)
    assert model.spk_conditioner is None and not model.needs_enrollment_audio()
    if config.endswith("_ls100.yaml"):  # ESPnet's LibriSpeech-100 conformer size
        assert (args.encoder_conf["num_blocks"], model.encoder.output_size()) == (12, 256)
        assert args.max_epoch == 70 and args.use_amp
    if at_tiny_size:
        batch = {k: v for k, v in _step_batch(whisper).items() if not k.startswith("enroll")}
        loss, stats, _ = model(**batch)
        assert torch.isfinite(loss) and "loss" in stats
    assert {c.removesuffix("_ls100.yaml").removesuffix(".yaml")
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


def test_the_activity_detector_learns_at_its_own_rate():
    # frame_transform's TS-VAD is a transformer from scratch: its learning rate is
    # --detector_lr_scale times the base, apart from the transforms' --enrollment_lr_scale.
    args = parse(SYSTEMS["ar_whisper_tiny"] + ["--encoder_conf", "enrollment=frame_transform",
                                               "--encoder_conf", "conditioning_conf={detector_layers: 1, detector_dim: 16}",
                                               "--enrollment_lr_scale", "50", "--detector_lr_scale", "5"])
    args.token_list = token_list_of(args.token_type)
    model = DiffASRTask.build_model(args)
    [optimizer] = DiffASRTask.build_optimizers(args, model)
    base = args.optim_conf["lr"]
    detector = {id(p) for p in model.encoder.conditioning.detector.parameters()}
    transforms = {id(model.encoder.conditioning.scale), id(model.encoder.conditioning.bias)}
    rates = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            kind = "detector" if id(p) in detector else "transforms" if id(p) in transforms else None
            if kind:
                rates.setdefault(kind, set()).add(group["lr"] / base)
    assert rates == {"detector": {5.0}, "transforms": {50.0}}
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters() if p.requires_grad)


def test_the_heads_on_the_encoder_learn_at_their_own_rate():
    # The CTC and length heads start from scratch on a pretrained encoder: --head_lr_scale
    # gives them their own rate; Whisper's pretrained decoder keeps the base one.
    args = parse(SYSTEMS["diffusion_whisper_tiny"] + ["--head_lr_scale", "20"])
    args.token_list = token_list_of(args.token_type)
    model = DiffASRTask.build_model(args)
    [optimizer] = DiffASRTask.build_optimizers(args, model)
    base = args.optim_conf["lr"]
    rate_of = {id(p): group["lr"] / base for group in optimizer.param_groups for p in group["params"]}
    assert {rate_of[id(p)] for p in model.ctc.parameters()} == {20.0}
    assert {rate_of[id(p)] for p in model.length_predictor.parameters()} == {20.0}
    assert {rate_of[id(p)] for p in model.decoder.parameters() if p.requires_grad} == {1.0}
    assert len(rate_of) == sum(1 for p in model.parameters() if p.requires_grad)


def test_learning_rate_groups_hold_the_pretrained_weights_at_their_rate():
    # --pretrained_lr_scale: Whisper's own weights (the encoder's trainable layers, the decoder)
    # learn at their share of the base rate, the modules from scratch at theirs, through the
    # scheduler's warm-up and decay, and the optimiser moves each by its own rate.
    from espnet2.schedulers.warmup_lr import WarmupLR

    args = parse(SYSTEMS["diffusion_whisper_tiny"] + ["--head_lr_scale", "20", "--pretrained_lr_scale", "0.1"])
    args.token_list = token_list_of(args.token_type)
    model = DiffASRTask.build_model(args)
    [optimizer] = DiffASRTask.build_optimizers(args, model)
    scheduler = WarmupLR(optimizer, warmup_steps=3)
    share_of = {id(p): i for i, group in enumerate(optimizer.param_groups) for p in group["params"]}
    assert len(share_of) == sum(1 for p in model.parameters() if p.requires_grad)

    def rates(module) -> set:
        return {optimizer.param_groups[share_of[id(p)]]["lr"] for p in module.parameters() if p.requires_grad}

    pretrained = [model.encoder.whisper, model.decoder.decoder]
    from_scratch = [model.encoder.adapter, model.ctc]
    for _ in range(6):  # warm-up, then 1/sqrt(step) decay
        [whisper_rate] = set.union(*(rates(m) for m in pretrained))
        [adapter_rate] = rates(model.encoder.adapter)
        [head_rate] = rates(model.ctc)
        assert whisper_rate == pytest.approx(0.1 * adapter_rate)
        assert head_rate == pytest.approx(20 * adapter_rate)
        optimizer.step()
        scheduler.step()
    # One Adam step moves a weight by about its rate: Whisper's a tenth as far as the adapter's.
    optimizer.zero_grad()
    before = {id(p): p.detach().clone() for m in pretrained + from_scratch for p in m.parameters() if p.requires_grad}
    for m in pretrained + from_scratch:
        for p in m.parameters():
            if p.requires_grad:
                p.grad = torch.ones_like(p)
    optimizer.state.clear()  # a first Adam step moves every weight by its rate, whatever the gradient's size
    lr_now = {pid: optimizer.param_groups[share_of[pid]]["lr"] for pid in before}
    optimizer.step()
    for m in pretrained + from_scratch:
        for p in m.parameters():
            if p.requires_grad:
                moved = (before[id(p)] - p.detach()).abs().max().item()
                assert moved == pytest.approx(lr_now[id(p)], rel=0.05, abs=1e-9), m.__class__.__name__


@pytest.mark.parametrize("system, option, missing", [
    ("diffusion_conformer_tiny", "--pretrained_lr_scale", "encoder.whisper"),
    ("ar_whisper_tiny", "--head_lr_scale", "ctc"),
])
def test_a_rate_for_modules_the_model_lacks_is_refused(system, option, missing):
    args = parse(SYSTEMS[system] + [option, "0.1"])
    args.token_list = token_list_of(args.token_type)
    model = DiffASRTask.build_model(args)
    with pytest.raises(ValueError, match=f"{option} is set but the model has no trainable {missing}"):
        DiffASRTask.build_optimizers(args, model)
