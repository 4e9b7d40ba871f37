"""The core runs without the optional extras; asking for what an extra provides names the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import egoasl
from egoasl.errors import EgoaslError

ROOT = Path(__file__).resolve().parents[1]

BLOCK_EXTRAS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("matplotlib", "tensorboard", "wandb", "sentence_transformers", "transformers"):
            raise ImportError(f"No module named {name!r} (blocked)")
sys.meta_path.insert(0, Block())
"""


def test_core_imports_and_cli_build_without_the_extras():
    script = BLOCK_EXTRAS + (
        "import egoasl.cli, egoasl.engine.train, egoasl.api, egoasl.viz, egoasl.metrics.plots\n"
        "egoasl.cli.build_parser()\n"
        "from egoasl.metrics.plots import pyplot\n"
        "from egoasl.errors import EgoaslError\n"
        "try:\n    pyplot()\nexcept EgoaslError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "plots need matplotlib; install the extra: pip install 'egoasl[plot]'" in proc.stdout


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    from egoasl.viz import plot_timeline

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(EgoaslError, match=r"egoasl\[plot\]"):
        plot_timeline(tmp_path / "t.png", [{"label": "a", "score": 0.5, "segment": [0.0, 1.0]}], 2.0)


def test_one_version_string_and_the_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert egoasl.__version__.count(".") == 2
    extras = project["optional-dependencies"]
    deps = " ".join(project["dependencies"])
    assert "matplotlib" not in deps and "tensorboard" not in deps
    assert any(d.startswith("sentence-transformers") for d in extras["text"])
    assert any(d.startswith("ruff") for d in extras["dev"])
    assert "egoasl[plot,tensorboard]" in extras["dev"]  # what the tests need comes with `make setup`
