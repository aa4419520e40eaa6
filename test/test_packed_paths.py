"""A packed model named by a relative path, as a user in a recipe dir names it."""

import shutil

from conftest import TARGET_TEXT
from diffasr.api import TargetSpeakerASR


def test_a_relative_zip_path_loads_and_loads_again_from_its_unpacked_dir(packed, tmp_path, monkeypatch):
    zip_path, mixture, enroll, _ = packed
    (tmp_path / "exp/asr/packed").mkdir(parents=True)
    shutil.copy(zip_path, tmp_path / "exp/asr/packed/model.zip")
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # the second load reads the unpacked dir the first one wrote
        asr = TargetSpeakerASR("exp/asr/packed/model.zip", steps=8)
        assert asr.transcribe(mixture, enrollment=enroll).text == TARGET_TEXT
    assert (tmp_path / "exp/asr/packed/model_unpacked/meta.yaml").is_file()
