"""`egoasl synth` output passes `egoasl data check`; a corrupted copy fails, naming the file."""

from __future__ import annotations

import shutil

import torch

from egoasl.cli import main


def test_synth_output_passes_data_check(tiny_data, capsys):
    code = main(["data", "check", "--annotations", str(tiny_data / "annotations"),
                 "--features", str(tiny_data / "features"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MQ" in out and "NLQ" in out


def test_corrupted_copy_fails_with_the_file_named(tiny_data, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_data, copy)
    video_file = sorted((copy / "features" / "slowfast").glob("*.pt"))[0]
    feats = torch.load(video_file, weights_only=True)
    feats[3, 0] = float("nan")
    torch.save(feats, video_file)
    (copy / "annotations" / "moments_val.json").write_text('{"videos": [')  # truncated JSON
    code = main(["data", "check", "--annotations", str(copy / "annotations"),
                 "--features", str(copy / "features"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert video_file.name in out and "NaN" in out
    assert "moments_val.json" in out
