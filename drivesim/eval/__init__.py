"""Evaluation of generated drives: geometry, consistency and trajectory checks."""
