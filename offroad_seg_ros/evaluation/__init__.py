"""Scoring a model or a recorded bag, and the report."""
