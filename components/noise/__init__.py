"""Synthetic label-noise injection (spec: shared/specs/noise.md)."""

from components.noise.generators import (
    NAMED_CLASS_MAPS,
    NOISE_KINDS,
    SAMPLINGS,
    inject_noise,
    transition_matrix,
)

__all__ = ["NAMED_CLASS_MAPS", "NOISE_KINDS", "SAMPLINGS", "inject_noise", "transition_matrix"]
