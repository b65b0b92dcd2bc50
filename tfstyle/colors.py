"""Keeping the photo's colours (Gatys et al. 2016, "Preserving color in neural artistic style
transfer"), with --preserve_colors:

- 'luminance': transfer the style to the luminance only. The picture written keeps the
  optimised image's luminance Y and takes its chroma (I, Q of YIQ) from the content photo: a
  post-process on what is written, outside the optimisation.
- 'histogram': before optimising, give the style image the content's colour statistics, its
  pixels' mean μ and covariance Σ, by the affine map x' = Σ_C^½·Σ_S^-½·(x − μ_S) + μ_C; the
  style's strokes are then painted in the photo's palette.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image

from tfstyle import images

# RGB -> YIQ (the NTSC standard); YIQ -> RGB is its inverse.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def to_yiq(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] RGB -> [..., 3] YIQ."""
    return np.asarray(rgb, np.float64) @ RGB_TO_YIQ.T


def from_yiq(yiq: np.ndarray) -> np.ndarray:
    return np.asarray(yiq, np.float64) @ YIQ_TO_RGB.T


def luminance_transfer(generated: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The generated image's luminance with the content's chroma, [H, W, 3] RGB in [0, 1]."""
    yiq = to_yiq(content)
    yiq[..., 0] = to_yiq(generated)[..., 0]
    return np.clip(from_yiq(yiq), 0.0, 1.0).astype(np.float32)


def _matrix_power(covariance: np.ndarray, power: float) -> np.ndarray:
    """Σ^power of a symmetric positive semi-definite matrix, its tiny eigenvalues floored (a
    flat or grey image has a singular covariance)."""
    values, vectors = np.linalg.eigh(covariance)
    values = np.maximum(values, 1e-8)
    return (vectors * values ** power) @ vectors.T


def match_histogram(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """`style` [h, w, 3] with the mean and covariance of `content`'s pixels, clipped to
    [0, 1]: x' = Σ_C^½·Σ_S^-½·(x − μ_S) + μ_C."""
    source = np.asarray(style, np.float64).reshape(-1, 3)
    target = np.asarray(content, np.float64).reshape(-1, 3)
    transform = (_matrix_power(np.cov(target, rowvar=False), 0.5)
                 @ _matrix_power(np.cov(source, rowvar=False), -0.5))
    matched = (source - source.mean(axis=0)) @ transform.T + target.mean(axis=0)
    return np.clip(matched, 0.0, 1.0).reshape(style.shape).astype(np.float32)


def finisher(mode: str, content_images: Sequence[Image.Image]
             ) -> Callable[[np.ndarray], np.ndarray]:
    """What turns the optimised pictures [batch, H, W, 3] into the ones written: with
    'luminance', each takes its content image's chroma (at the picture's size, which is the
    scale's); otherwise they are written as they are."""
    if mode != "luminance":
        return lambda pictures: pictures

    def finish(pictures: np.ndarray) -> np.ndarray:
        height, width = pictures.shape[1:3]
        return np.stack([luminance_transfer(picture, images.to_array(content, (width, height)))
                         for picture, content in zip(pictures, content_images)])
    return finish
