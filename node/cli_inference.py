"""Inference commands: infer, verify, annotate."""
COMMANDS: list = []
