"""Classifiers. Every model maps a batch to `(logits, embedding)`, the embedding being the penultimate layer."""

from components.models.build import build_model, load_model_checkpoint, save_model_checkpoint

__all__ = ["build_model", "load_model_checkpoint", "save_model_checkpoint"]
