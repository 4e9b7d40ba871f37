"""The README's "Your own data" walk-through and its Python API snippet, run as written at tiny size.

Every command of the walk-through runs in order in a fresh folder; the only changes are the
tiny sizes: the synthetic dataset at ``--scale tiny`` (12-d features, 6 classes, so the YAML's
``dim``/``num_classes`` follow), a small detector and two epochs appended to ``train``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from egoasl.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TINY_TRAIN = ["train.epochs=2", "train.eval_start_epoch=2", "train.batch_size=2", "model.width=32", "model.num_levels=4",
              "model.rel_global_inner=64", "data.max_seq_len=64", "model.regression_ranges=[[0,4],[2,8],[4,16],[8,10000]]",
              "train.threads=1"]
TINY_YAML = {"dim: 24": "dim: 12", "proj_dim: 256": "proj_dim: 16", "num_classes: 8": "num_classes: 6"}


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _blocks(section: str, language: str) -> list[str]:
    """The fenced code blocks of ``section`` opened with ```` ```language ```` ("" for a plain fence)."""
    blocks, current, lang = [], None, None
    for line in section.splitlines():
        if line.startswith("```") and current is None:
            current, lang = [], line[3:].strip()
        elif line.startswith("```"):
            if lang == language:
                blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _run(command: str) -> str:
    args = shlex.split(command)
    assert args[0] == "egoasl"
    args = args[1:]
    if args[0] == "synth":
        args += ["--scale", "tiny", "--videos", "10"]
    if args[0] == "train":
        args += TINY_TRAIN
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    assert code == 0, (command, out.getvalue())
    return out.getvalue()


def test_walk_through_and_python_api_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    walk = _section("Your own data")
    (config,) = _blocks(walk, "yaml")
    for real, tiny in TINY_YAML.items():
        assert real in config
        config = config.replace(real, tiny)
    Path("mydata.yaml").write_text(config, encoding="utf-8")
    commands = [line for block in _blocks(walk, "") for line in block.splitlines() if line.startswith("egoasl ")]
    assert [shlex.split(c)[1] for c in commands] == ["synth", "data", "train", "predict", "eval"]
    outputs = [_run(command) for command in commands]

    assert "data check: no problems found" in outputs[1]
    metrics = json.loads(Path("runs/mydata/predictions/val_metrics.json").read_text())
    assert list(metrics["mAP"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
    average = f"{metrics['average_mAP']:.2f}"
    table = next(line for line in outputs[4].splitlines() if line.startswith("mAP (%)"))
    assert table.split()[-1] == average  # eval on the ActivityNet result file: predict's number

    (snippet,) = _blocks(_section("Python API"), "python")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "README.md (Python API)", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[-1] == f"average mAP {average}"
    moment = re.compile(r"^.+: \d+\.\d-\d+\.\d s, score \d\.\d{3}$")
    assert 1 <= len(lines) - 1 <= 3 and all(moment.match(line) for line in lines[:-1])


@pytest.mark.parametrize("title", ["Your own data", "Python API"])
def test_sections_exist(title):
    assert _section(title).strip()
