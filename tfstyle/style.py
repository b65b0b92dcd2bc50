"""A style is a value: an image, its share of the blend, and the region it paints.

With several style images (--style=a.jpg,b.jpg --style_weights=0.7,0.3) the style cost is the
weighted sum of each image's style cost, J_style = Σ_s w_s·Σ_l λ_l·J_style^[l](S_s, G), the
weights taken to sum to 1 so that β keeps its meaning. With --style_masks each style paints
only its region of the generated image (Gatys et al. 2017, "Controlling perceptual factors in
neural style transfer"): the region's mask, downsampled to each style layer, multiplies the
generated image's activations before their Gram matrix, G_G = (m·F)ᵀ(m·F), and the target is
the style image's Gram scaled to the region's share of the positions, Σm²/N. A mask of zeros
gives that style no cost; soft masks blend the styles where they overlap.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfstyle.config import Config
from tfstyle.costs import gram_matrix
from tfstyle.features import layer_shape, layer_stride


@dataclasses.dataclass(frozen=True)
class Style:
    """One style image at a scale: its pixels [1 or batch, h, w, 3] in [0, 1], its share of the
    style cost, and its region of the generated image, [H, W] in [0, 1] (None: everywhere)."""
    image: np.ndarray
    weight: float = 1.0
    mask: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class StyleTarget:
    """What the costs compare the generated image with for one Style: the target Gram matrix at
    each style layer ([1 or batch, n_C, n_C]) and the region at each style layer
    ([1, n_H, n_W, 1]; None: everywhere)."""
    weight: float
    grams: list[tf.Tensor]
    masks: Optional[list[tf.Tensor]] = None


def blend_weights(weights: Sequence[float], styles: int) -> list[float]:
    """--style_weights as shares that sum to 1 (equal shares when none are given)."""
    weights = list(weights) or [1.0] * styles
    return [weight / sum(weights) for weight in weights]


def layer_masks(mask: np.ndarray, layers: Sequence[str]) -> list[tf.Tensor]:
    """The mask [H, W] at each layer's resolution ([1, n_H, n_W, 1]), each position the mean of
    the pixels it covers."""
    height, width = mask.shape
    result = []
    for name in layers:
        stride = layer_stride(name)
        rows, columns, _ = layer_shape(name, height, width)
        tiles = np.asarray(mask, np.float64)[:rows * stride, :columns * stride].reshape(
            rows, stride, columns, stride)
        result.append(tf.constant(tiles.mean(axis=(1, 3))[None, :, :, None], tf.float32))
    return result


def generated_grams(features: dict[str, tf.Tensor], layers: Sequence[str],
                    regions: Sequence[Optional[Sequence[tf.Tensor]]]) -> list[list[tf.Tensor]]:
    """For each style, the generated image's Gram matrix at each layer, of its activations in
    that style's region (`regions`: the masks at each layer, or None for the whole image,
    whose Grams the styles without a region share)."""
    whole = [gram_matrix(features[name]) for name in layers]
    return [whole if masks is None else
            [gram_matrix(features[name] * mask) for name, mask in zip(layers, masks)]
            for masks in regions]


def target(config: Config, style: Style, grams: Sequence[tf.Tensor],
           size: tuple[int, int]) -> StyleTarget:
    """The StyleTarget of `style` (whose Gram matrices are `grams`) for generated images of
    `size` = (W, H).

    A Gram sums over positions. With --style_scale s the style image has about s² times the
    generated image's, so each layer's Gram is taken per position of the style image, times
    the generated image's positions, G_S·N_G/N_S; in a region, times its share of them, Σm²/N_G.
    At s = 1 with no mask the areas already match (schedule.style_size_at) and the course's
    formulas stay exactly as they are."""
    width, height = size
    masks = None if style.mask is None else layer_masks(style.mask, config.layer_names)
    if config.style_scale != 1:
        _, style_height, style_width, _ = style.image.shape
        grams = [gram * float(np.prod(layer_shape(name, height, width)[:2])
                              / np.prod(layer_shape(name, style_height, style_width)[:2]))
                 for gram, name in zip(grams, config.layer_names)]
    if masks is not None:
        grams = [gram * tf.reduce_mean(tf.square(mask)) for gram, mask in zip(grams, masks)]
    return StyleTarget(style.weight, list(grams), masks)
