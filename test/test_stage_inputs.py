"""The record of what a stage consumed, and what changed since."""

import json

from diffasr.stage_inputs import changed, record


def test_changed_names_edited_added_and_removed_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    assert changed("inputs.json", ["a", "b"]) is None  # no record yet
    record("inputs.json", ["a", "b"])
    assert json.loads((tmp_path / "inputs.json").read_text())["git_commit"] == "unknown"  # not a repository
    assert changed("inputs.json", ["a", "b"]) == []
    (tmp_path / "b").write_text("b, edited")
    assert changed("inputs.json", ["a", "b"]) == ["b"]
    assert changed("inputs.json", ["a", "b", "c"]) == ["b", "c"]  # c was not an input then
    assert changed("inputs.json", ["a"]) == ["b"]  # b is no longer one
