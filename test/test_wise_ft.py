"""WiSE-FT (diffasr.espnet2.wise_ft): Whisper's weights interpolated, the added modules kept."""

import pytest
import torch
import yaml

from diffasr.espnet2.builder import build_model_from_file
from diffasr.espnet2.wise_ft import wise_ft
from diffasr.inference.options import DecodeOptions

QUERY, BIAS, ADDED = "encoder.whisper.blocks.2.attn.query.weight", "decoder.decoder.ln.bias", "encoder.adapter.w"


def _states():
    pretrained = {QUERY: torch.zeros(2, 2), BIAS: torch.full((3,), 2.0), ADDED: torch.zeros(2)}
    finetuned = {QUERY: torch.ones(2, 2), BIAS: torch.full((3,), 4.0),
                 ADDED: torch.full((2,), 7.0),  # added by the system: no pretrained value
                 "encoder.whisper.step": torch.tensor(5)}  # not floating point: kept
    return pretrained, finetuned


@pytest.mark.parametrize("shares, query, bias", [
    ({"encoder": 1.0, "decoder": 1.0}, 1.0, 4.0),
    ({"encoder": 0.0, "decoder": 0.0}, 0.0, 2.0),
    ({"encoder": 0.25, "decoder": 0.5}, 0.25, 3.0),
    ({"encoder": 0.25}, 0.25, 4.0),  # the decoder as trained
])
def test_each_part_of_whispers_weights_moves_toward_whisper_at_its_share(shares, query, bias):
    pretrained, finetuned = _states()
    merged, counts = wise_ft(finetuned, pretrained, shares)
    assert counts == {part: 1 for part in shares}
    assert torch.allclose(merged[QUERY], torch.full((2, 2), query))
    assert torch.allclose(merged[BIAS], torch.full((3,), bias))
    assert torch.equal(merged[ADDED], finetuned[ADDED])
    assert merged["encoder.whisper.step"].item() == 5


def test_another_architecture_part_or_share_is_refused():
    pretrained, finetuned = _states()
    with pytest.raises(ValueError, match=r"share of Whisper's encoder must be in \[0, 1\]"):
        wise_ft(finetuned, pretrained, {"encoder": 1.5})
    with pytest.raises(ValueError, match="WiSE-FT parts are"):
        wise_ft(finetuned, pretrained, {"adapter": 0.5})
    with pytest.raises(ValueError, match=r"decoder.decoder.ln.bias is \(3,\) in the fine-tuned .* \(4,\)"):
        wise_ft(finetuned, {**pretrained, BIAS: torch.zeros(4)}, {"decoder": 0.5})
    del pretrained[BIAS]
    with pytest.raises(ValueError, match="the pretrained weights lack decoder.decoder.ln.bias"):
        wise_ft(finetuned, pretrained, {"decoder": 0.5})
    # a system without Whisper's weights (a conformer) is left as it is, the part counted 0
    merged, counts = wise_ft({"ctc.ctc_lo.weight": torch.ones(1)}, {}, {"encoder": 0.5})
    assert counts == {"encoder": 0} and torch.equal(merged["ctc.ctc_lo.weight"], torch.ones(1))
    with pytest.raises(ValueError, match=r"wise_ft_encoder must be in \[0, 1\]"):
        DecodeOptions.from_flat({"wise_ft_encoder": -0.1})


def test_a_loaded_system_is_interpolated_with_the_whisper_its_config_builds(tmp_path):
    from test_espnet_task import build

    model, args = build("ar_whisper_tiny")
    whisper = {k: v.clone() for k, v in model.state_dict().items()}
    trained = "encoder.whisper.blocks.2.mlp.0.weight"
    frozen = "encoder.whisper.blocks.0.mlp.0.weight"
    decoder = "decoder.decoder.ln.weight"
    added = next(k for k in whisper if k.startswith("encoder.adapter.") and whisper[k].is_floating_point())
    finetuned = {k: v + 1.0 if k in (trained, added, decoder) else v for k, v in whisper.items()}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(finetuned, tmp_path / "model.pth")

    options = DecodeOptions.from_flat({"wise_ft_encoder": 0.5})
    loaded, _ = build_model_from_file(tmp_path / "config.yaml", tmp_path / "model.pth",
                                      wise_ft=options.recognizer.wise_ft())

    state = loaded.state_dict()
    assert torch.allclose(state[trained], whisper[trained] + 0.5)
    assert torch.equal(state[frozen], whisper[frozen])
    assert torch.equal(state[decoder], whisper[decoder] + 1.0)  # no share given: as trained
    assert torch.equal(state[added], whisper[added] + 1.0)
    as_trained, _ = build_model_from_file(tmp_path / "config.yaml", tmp_path / "model.pth")
    assert torch.equal(as_trained.state_dict()[trained], whisper[trained] + 1.0)
    with pytest.raises(ValueError, match="give the model file"):
        build_model_from_file(tmp_path / "config.yaml", None, wise_ft={"encoder": 0.5})


def test_the_decode_options_reach_the_loaded_model(tmp_path):
    from test_espnet_task import build

    from diffasr.inference.speech2text import Speech2Text

    model, args = build("ar_whisper_tiny")
    trained = "encoder.whisper.blocks.3.attn.key.weight"
    whisper = model.state_dict()[trained].clone()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save({k: v + 2.0 if k == trained else v for k, v in model.state_dict().items()}, tmp_path / "model.pth")

    speech2text = Speech2Text(str(tmp_path / "config.yaml"), str(tmp_path / "model.pth"),
                              wise_ft_encoder=0.25, beam_size=1)

    assert torch.allclose(speech2text.model.state_dict()[trained], whisper + 0.5)
    with pytest.raises(ValueError, match=r"\['wise_ft_encoder'\] are set when the model is loaded"):
        speech2text.call_options(DecodeOptions.from_flat({"wise_ft_encoder": 0.5, "beam_size": 1}))


def test_a_decoder_that_never_was_whispers_stays_as_trained(tmp_path, caplog):
    from test_espnet_task import build

    model, args = build("diffusion_whisper_tiny")
    args.decoder_conf = {**args.decoder_conf, "pretrained": False}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = "decoder.decoder.ln.weight"
    state[name] += 3.0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(state, tmp_path / "model.pth")

    with caplog.at_level("INFO"):
        loaded, _ = build_model_from_file(tmp_path / "config.yaml", tmp_path / "model.pth",
                                          wise_ft={"decoder": 0.0})

    assert torch.equal(loaded.state_dict()[name], state[name])
    assert "wise_ft_decoder ignored" in caplog.text
