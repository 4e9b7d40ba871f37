"""egoasl: Action Sensitivity Learning for the Ego4D Episodic Memory benchmarks.

The Python API (:mod:`egoasl.api`) is available from the package itself, imported on first use
so that ``import egoasl`` stays light::

    import egoasl
    run = egoasl.load_run("runs/mine")
    moments = run.predict_clip("video.npy", duration=120.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Moment", "Run", "__version__", "evaluate_mq", "evaluate_nlq", "load_mq_ground_truth", "load_run"]

if TYPE_CHECKING:
    from egoasl.api import Moment, Run, evaluate_mq, evaluate_nlq, load_mq_ground_truth, load_run


def __getattr__(name: str) -> Any:
    if name in __all__:
        from egoasl import api

        return getattr(api, name)
    raise AttributeError(f"module 'egoasl' has no attribute {name!r}")
