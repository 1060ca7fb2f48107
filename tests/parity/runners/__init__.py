"""Runners and reference adapters shared by several parity-row modules."""
