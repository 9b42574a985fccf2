"""Runs: loading a model with its data, training to a checkpoint, resumable certification,
the report folder and CI thresholds.
"""
