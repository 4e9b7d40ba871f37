"""Submission files and checkpoints."""
