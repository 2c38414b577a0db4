"""Evaluation metrics: Fréchet distances (Inception or reference-classifier features) and
per-class accuracy of conditional samples."""
