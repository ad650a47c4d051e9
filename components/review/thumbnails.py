"""Samples as small inline pictures (PNG data URIs) or short feature rows, for review pages and exports."""

from __future__ import annotations

import base64
import io

import numpy as np


def to_uint8_image(sample: np.ndarray) -> np.ndarray:
    """One stored image sample (C, H, W), uint8 or float in [0, 1], as uint8 (H, W) grey or (H, W, 3) RGB."""
    image = np.asarray(sample)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected one image of shape (C, H, W) with C = 1 or 3, got {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def png_data_uri(sample: np.ndarray, *, min_side: int = 64) -> str:
    """A `data:image/png;base64,…` URI of one stored image, enlarged by a whole factor (nearest neighbour) so that
    its shorter side is at least `min_side` pixels: an 8×8 digit stays crisp instead of a blur."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(sample, min_side=min_side)).decode("ascii")


def png_bytes(sample: np.ndarray, *, min_side: int = 64) -> bytes:
    """One stored image as PNG bytes, enlarged as `png_data_uri` does."""
    from PIL import Image

    pixels = to_uint8_image(sample)
    factor = max(1, -(-min_side // min(pixels.shape[:2])))
    if factor > 1:
        pixels = pixels.repeat(factor, axis=0).repeat(factor, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def feature_text(sample: np.ndarray, *, names: list[str] | None = None, limit: int = 12) -> str:
    """A feature row as `name=value` pairs (`x0`, `x1`, … without names), at most `limit` of them, then `…`."""
    values = np.asarray(sample).ravel()
    names = names or [f"x{i}" for i in range(values.size)]
    shown = [f"{n}={v:.4g}" for n, v in zip(names[:limit], values[:limit])]
    return ", ".join(shown + (["…"] if values.size > limit else []))
