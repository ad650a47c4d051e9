"""Synthetic label-noise injection, one convention of the literature per kind (docs/parameters.md#noise-kinds)."""

from components.noise.generators import (
    NAMED_CLASS_MAPS,
    NOISE_KINDS,
    SAMPLINGS,
    inject_noise,
    transition_matrix,
)

__all__ = ["NAMED_CLASS_MAPS", "NOISE_KINDS", "SAMPLINGS", "inject_noise", "transition_matrix"]
