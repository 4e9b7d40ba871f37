"""egoasl: Action Sensitivity Learning for the Ego4D Episodic Memory benchmarks."""

__version__ = "0.1.0"
