import json

import pytest

from sentiment_dpo import files
from sentiment_dpo.errors import PipelineError


def test_missing_file_names_the_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match="run `python3 text_generation.py` first"):
        files.read_jsonl(tmp_path / "nope.jsonl", ["prompt"], "python3 text_generation.py")


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "a"}\n{"prompt": \n', "line 2 is not valid JSON"),
    ('{"prompt": "a"}\n\n', "line 2 is empty"),
    ('{"prompt": "a"}\n[1, 2]\n', "line 2 is not a JSON object"),
    ('{"prompt": "a"}\n{"other": 1}\n', "line 2 lacks column\\(s\\) prompt"),
    ("", "has no rows"),
])
def test_bad_jsonl_lines_are_named(tmp_path, content, message):
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    with pytest.raises(PipelineError, match=message):
        files.read_jsonl(path, ["prompt"], "stage")


def test_jsonl_round_trip(tmp_path):
    rows = [{"prompt": "é", "n": 1}, {"prompt": "b", "n": 2}]
    files.write_jsonl(tmp_path / "d" / "x.jsonl", rows)
    assert files.read_jsonl(tmp_path / "d" / "x.jsonl", ["prompt"], "stage") == rows


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.json"
    files.write_json(path, {"a": 1})

    def broken_rows():
        yield {"a": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        files.write_jsonl(path, broken_rows())
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_replace_dir_atomic(tmp_path):
    final = tmp_path / "models" / "m"
    staged = files.make_staging_dir(final)
    (staged / "f").write_text("new")
    final.mkdir(parents=True, exist_ok=True)
    (final / "f").write_text("old")
    files.replace_dir_atomic(staged, final)
    assert (final / "f").read_text() == "new"
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"]


def test_replaced_folder_is_readable_like_any_file(tmp_path):
    """safetensors writes model.safetensors with mode 0600: another user of a shared run dir could not load it."""
    import os

    final = tmp_path / "models" / "m"
    staged = files.make_staging_dir(final)
    (staged / "model.safetensors").write_bytes(b"x")
    os.chmod(staged / "model.safetensors", 0o600)
    umask = os.umask(0o022)
    try:
        files.replace_dir_atomic(staged, final)
    finally:
        os.umask(umask)
    assert (final / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert final.stat().st_mode & 0o777 == 0o755


def test_a_full_disk_names_the_artifact_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from sentiment_dpo.cli import environment_problem

    path = tmp_path / "metrics.json"
    files.write_json(path, {"old": True})

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as caught:
        files.write_json(path, {"new": True})
    monkeypatch.undo()
    message = environment_problem(caught.value)
    assert message.startswith(f"{path}: No space left on device; free some disk space")
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
