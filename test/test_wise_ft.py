"""WiSE-FT (diffasr.espnet2.wise_ft): Whisper's weights interpolated, the added modules kept."""

import pytest
import torch
import yaml

from diffasr.espnet2.wise_ft import wise_ft, wise_ft_experiment


def _states():
    pretrained = {"encoder.whisper.blocks.2.attn.query.weight": torch.zeros(2, 2),
                  "decoder.decoder.ln.bias": torch.full((3,), 2.0),
                  "encoder.conditioning.proj.weight": torch.zeros(2)}
    finetuned = {"encoder.whisper.blocks.2.attn.query.weight": torch.ones(2, 2),
                 "decoder.decoder.ln.bias": torch.full((3,), 4.0),
                 "encoder.conditioning.proj.weight": torch.full((2,), 7.0),  # added by the system: no pretrained value
                 "encoder.whisper.step": torch.tensor(5)}  # not floating point: kept
    return pretrained, finetuned


@pytest.mark.parametrize("share, query, bias", [(1.0, 1.0, 4.0), (0.0, 0.0, 2.0), (0.25, 0.25, 2.5)])
def test_only_whispers_own_weights_move_toward_whisper(share, query, bias):
    pretrained, finetuned = _states()
    merged, n = wise_ft(finetuned, pretrained, share)
    assert n == 2
    assert torch.allclose(merged["encoder.whisper.blocks.2.attn.query.weight"], torch.full((2, 2), query))
    assert torch.allclose(merged["decoder.decoder.ln.bias"], torch.full((3,), bias))
    assert torch.equal(merged["encoder.conditioning.proj.weight"], finetuned["encoder.conditioning.proj.weight"])
    assert merged["encoder.whisper.step"].item() == 5


def test_another_architecture_or_share_is_refused():
    pretrained, finetuned = _states()
    with pytest.raises(ValueError, match="finetuned_share must be in"):
        wise_ft(finetuned, pretrained, 1.5)
    with pytest.raises(ValueError, match=r"decoder.decoder.ln.bias is \(3,\) in the fine-tuned .* \(4,\)"):
        wise_ft(finetuned, {**pretrained, "decoder.decoder.ln.bias": torch.zeros(4)}, 0.5)
    del pretrained["decoder.decoder.ln.bias"]
    with pytest.raises(ValueError, match="the pretrained weights lack decoder.decoder.ln.bias"):
        wise_ft(finetuned, pretrained, 0.5)
    with pytest.raises(ValueError, match="nothing pretrained"):
        wise_ft({"ctc.ctc_lo.weight": torch.ones(1)}, {}, 0.5)


def test_an_experiment_is_interpolated_with_the_whisper_its_config_builds(tmp_path):
    from test_espnet_task import build

    model, args = build("ar_whisper_tiny")
    whisper = {k: v.clone() for k, v in model.state_dict().items()}
    trained = "encoder.whisper.blocks.2.mlp.0.weight"
    frozen = "encoder.whisper.blocks.0.mlp.0.weight"
    added = next(k for k in whisper if k.startswith("encoder.adapter.") and whisper[k].is_floating_point())
    finetuned = {k: v + 1.0 if k in (trained, added) else v for k, v in whisper.items()}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(finetuned, tmp_path / "model.pth")

    n = wise_ft_experiment(tmp_path, "model.pth", 0.5, tmp_path / "wise.pth")

    merged = torch.load(tmp_path / "wise.pth", weights_only=True)
    assert n == sum(k.startswith(("encoder.whisper.", "decoder.decoder.")) and v.is_floating_point()
                    for k, v in whisper.items())
    assert torch.allclose(merged[trained], whisper[trained] + 0.5)
    assert torch.equal(merged[frozen], whisper[frozen])
    assert torch.equal(merged[added], whisper[added] + 1.0)
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        wise_ft_experiment(tmp_path, "missing.pth", 0.5, tmp_path / "x.pth")


def test_one_part_alone_is_interpolated(tmp_path):
    from test_espnet_task import build

    model, args = build("ar_whisper_tiny")
    whisper = {k: v.clone() for k, v in model.state_dict().items()}
    encoder, decoder = "encoder.whisper.blocks.2.mlp.0.weight", "decoder.decoder.ln.weight"
    finetuned = {k: v + 1.0 if k in (encoder, decoder) else v for k, v in whisper.items()}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(finetuned, tmp_path / "model.pth")

    wise_ft_experiment(tmp_path, "model.pth", 0.0, tmp_path / "wise.pth", parts=["encoder"])

    merged = torch.load(tmp_path / "wise.pth", weights_only=True)
    assert torch.equal(merged[encoder], whisper[encoder])
    assert torch.equal(merged[decoder], whisper[decoder] + 1.0)
    with pytest.raises(ValueError, match="parts must be some of"):
        wise_ft_experiment(tmp_path, "model.pth", 0.5, tmp_path / "x.pth", parts=["adapter"])
