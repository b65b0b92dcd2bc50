"""The objective of an image too large for one pass, computed tile by tile, exactly.

Going through VGG19 and back keeps every activation for the backward pass, so a step's memory
grows with the pixels: a 3840x2160 image needs about 40 GB in one pass. In tiles it grows with
the tile instead, for about twice the time per step (two passes, and the tiles' context).

Exact, not approximate:
- Each tile is run with a margin of context (halo) as wide as the deepest layer's receptive
  field, and starts on a multiple of VGG19's total pooling stride, so the activations of its
  core are exactly the whole image's there (the margins only feed the core).
- The costs depend on the activations only through sums over positions: the content cost's
  squared differences and each style layer's Gram matrix. Summed over the cores, they are the
  whole image's, and Objective.costs_from turns them into the costs.
- The gradient follows by the chain rule. With s_k those sums, ∂J/∂x = Σ_k ∂J/∂s_k · Σ_tiles
  ∂s_k,tile/∂x: a first pass adds up the sums and gives the costs and ∂J/∂s_k (by autodiff
  through costs_from); a second pass differentiates each tile's Σ_k <∂J/∂s_k, s_k,tile> with
  respect to its pixels, margins included, and adds it into the image's gradient.
Total variation is a sum over neighbouring pixels and costs little memory: it is taken on the
whole image.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfstyle.config import Config
from tfstyle.costs import content_cost, gram_matrix
from tfstyle.features import FeatureExtractor, layer_shape, layer_stride, receptive_field
from tfstyle.objective import Costs, Objective, Temporal
from tfstyle.style import Style, generated_grams
from tfstyle.style import target as style_target

ALIGN = 16  # VGG19's total pooling stride: tiles start on its multiples so poolings line up


class _QuietRetracing(logging.Filter):
    """Each pass is traced once per region shape (a few per scale), by design; TensorFlow's
    warning about frequent retracing would only alarm the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_QuietRetracing())


def halo(layers: Sequence[str]) -> int:
    """The margin each tile needs so that its core's activations at `layers` are exact."""
    need = 0
    for name in layers:
        left, right = receptive_field(name)
        # The last position of a core ends `stride` pixels before the core's end.
        need = max(need, left, right - layer_stride(name) + 1)
    return math.ceil(need / ALIGN) * ALIGN


@dataclasses.dataclass(frozen=True)
class Span:
    """Along one axis: a tile's core [start, end) and the region [region_start, region_end)
    it is run on, in pixels."""
    start: int
    end: int
    region_start: int
    region_end: int


def spans(length: int, core: int, margin: int) -> list[Span]:
    """Tiles along an axis of `length` pixels: cores of `core` pixels (a multiple of ALIGN),
    regions of one length (core + 2·margin) where they fit, shifted inwards at the ends rather
    than cut, so that a few region shapes serve the whole image (each is compiled once)."""
    size = core + 2 * margin
    if length <= size:
        return [Span(start, min(start + core, length), 0, length)
                for start in range(0, length, core)]
    last = (length - size) // ALIGN * ALIGN  # the last region start that leaves a full region
    result = []
    for start in range(0, length, core):
        end = min(start + core, length)
        region_start = min(max(0, start - margin), last)
        region_end = length if end + margin > region_start + size else region_start + size
        assert start - region_start >= margin or region_start == 0
        assert region_end - end >= margin or region_end == length
        result.append(Span(start, end, region_start, region_end))
    return result


class TiledObjective:
    """Objective's costs and gradient for images of `size` in tiles of `tile` pixels a side.
    Its targets are taken in tiles too."""

    tiled = True

    def __init__(self, config: Config, extractor: FeatureExtractor,
                 content: Optional[np.ndarray], styles: Sequence[Style], size: tuple[int, int],
                 tile: int, temporal: Optional[Temporal] = None) -> None:
        self.config = config
        self.extractor = extractor
        self.tile = tile
        self.margin = halo(config.layers)
        self._passes: dict[tuple, Callable] = {}
        content_targets = None if content is None else [
            self._assemble(content, name) for name in config.content_layer_names]
        targets = [style_target(config, style, self._grams(style.image), size)
                   for style in styles]
        self.objective = Objective(config, extractor, content_targets, targets, size, temporal)

    # --- geometry ---

    def tiles(self, height: int, width: int) -> list[tuple[Span, Span]]:
        return [(rows, columns) for rows in spans(height, self.tile, self.margin)
                for columns in spans(width, self.tile, self.margin)]

    @staticmethod
    def window(name: str, rows: Span, columns: Span) -> tuple[slice, slice]:
        """Where the layer's activations of the region lie in the whole image's."""
        stride = layer_stride(name)
        return (slice(rows.region_start // stride, rows.region_end // stride),
                slice(columns.region_start // stride, columns.region_end // stride))

    @staticmethod
    def mask(name: str, rows: Span, columns: Span) -> np.ndarray:
        """1 at the layer positions of the region that belong to the core, else 0:
        [1, n_H, n_W, 1] of the region's activations."""
        stride = layer_stride(name)
        height = (rows.region_end - rows.region_start) // stride
        width = (columns.region_end - columns.region_start) // stride
        mask = np.zeros((1, height, width, 1), np.float32)
        mask[:, (rows.start - rows.region_start) // stride:rows.end // stride - rows.region_start // stride,
             (columns.start - columns.region_start) // stride:columns.end // stride - columns.region_start // stride] = 1
        return mask

    def _compiled(self, kind: str, fn: Callable, shape: tuple) -> Callable:
        key = (kind, shape)
        if key not in self._passes:
            self._passes[key] = tf.function(fn, jit_compile=self.config.jit)
        return self._passes[key]

    # --- targets ---

    def _assemble(self, images: np.ndarray, name: str) -> tf.Tensor:
        """The layer's activations of `images`, computed tile by tile, put together."""
        batch, height, width = images.shape[:3]
        whole = np.zeros((batch, *layer_shape(name, height, width)), np.float32)
        for rows, columns in self.tiles(height, width):
            region = images[:, rows.region_start:rows.region_end,
                            columns.region_start:columns.region_end]
            features = self._compiled(f"features {name}", lambda x: self.extractor(x)[name],
                                      region.shape)(tf.constant(region)).numpy()
            mask = self.mask(name, rows, columns)[0, :, :, 0].astype(bool)
            window = self.window(name, rows, columns)
            core = whole[:, window[0], window[1]]
            core[:, mask] = features[:, mask]
        return tf.constant(whole)

    def _grams(self, style: np.ndarray) -> list[tf.Tensor]:
        """The style image's Gram matrices, summed over its tiles' cores."""
        height, width = style.shape[1:3]
        totals = None
        for rows, columns in self.tiles(height, width):
            region = style[:, rows.region_start:rows.region_end,
                           columns.region_start:columns.region_end]
            masks = [tf.constant(self.mask(name, rows, columns)) for name in self.config.layer_names]
            grams = self._compiled("grams", self._core_grams, region.shape)(
                tf.constant(region), masks)
            totals = grams if totals is None else [a + b for a, b in zip(totals, grams)]
        return totals

    def _core_grams(self, region: tf.Tensor, masks: list[tf.Tensor]) -> list[tf.Tensor]:
        features = self.extractor(region)
        return [gram_matrix(features[name] * mask)
                for name, mask in zip(self.config.layer_names, masks)]

    # --- the passes ---

    def _sums(self, region: tf.Tensor, targets: Optional[list[tf.Tensor]],
              masks: tuple[list[tf.Tensor], list[tf.Tensor]],
              regions: list[Optional[list[tf.Tensor]]], shares: tuple[float, ...]
              ) -> tuple[Optional[list[tf.Tensor]], list[list[tf.Tensor]]]:
        """The tile's part of the sums: its core's content cost at each content layer (a share
        of the image's; None without a content term) and, for each style, its core's Gram
        matrix at each style layer (of the activations in the style's region, `regions`, where
        it has one). `masks`: the cores at the content layers and at the style layers."""
        features = self.extractor(region)
        content_masks, style_masks = masks
        content = None
        if targets is not None:
            content = [content_cost(target * mask, features[name] * mask) * share
                       for name, target, mask, share in zip(self.config.content_layer_names,
                                                            targets, content_masks, shares)]
        cores = {name: features[name] * mask
                 for name, mask in zip(self.config.layer_names, style_masks)}
        return content, generated_grams(cores, self.config.layer_names, regions)

    def _region_gradient(self, region: tf.Tensor, targets: Optional[list[tf.Tensor]],
                         masks: tuple[list[tf.Tensor], list[tf.Tensor]],
                         regions: list[Optional[list[tf.Tensor]]], shares: tuple[float, ...],
                         content_weights: Optional[list[tf.Tensor]],
                         gram_weights: list[list[tf.Tensor]]) -> tf.Tensor:
        """∂/∂region of Σ_k <∂J/∂s_k, s_k,tile>."""
        with tf.GradientTape() as tape:
            tape.watch(region)
            content, grams = self._sums(region, targets, masks, regions, shares)
            linear = tf.add_n([tf.reduce_sum(weight * gram)
                               for style_weights, style_grams in zip(gram_weights, grams)
                               for weight, gram in zip(style_weights, style_grams)])
            if content is not None:
                linear += tf.add_n([tf.reduce_sum(weight * cost)
                                    for weight, cost in zip(content_weights, content)])
        return tape.gradient(linear, region)

    def _tile_inputs(self, image: np.ndarray, rows: Span, columns: Span):
        region = image[:, rows.region_start:rows.region_end, columns.region_start:columns.region_end]
        masks = tuple([tf.constant(self.mask(name, rows, columns)) for name in names]
                      for names in (self.config.content_layer_names, self.config.layer_names))
        # Each style's region, cut to this tile's region at each layer.
        regions = [None if style.masks is None else
                   [mask[:, window[0], window[1]] for mask, window in
                    zip(style.masks, (self.window(name, rows, columns)
                                      for name in self.config.layer_names))]
                   for style in self.objective.styles]
        targets, shares = None, ()
        if self.objective.content_targets is not None:
            targets = []
            for name, whole in zip(self.config.content_layer_names,
                                   self.objective.content_targets):
                window = self.window(name, rows, columns)
                targets.append(whole[:, window[0], window[1]])
            # The content cost divides by the size of the activations it sums over: the
            # region's layer here, the whole image's in the total.
            shares = tuple(float(np.prod(target.shape[1:]) / np.prod(whole.shape[1:]))
                           for target, whole in zip(targets, self.objective.content_targets))
        return tf.constant(region), targets, masks, regions, shares

    def _evaluate(self, image: np.ndarray, gradient: bool) -> tuple[Costs, tf.Tensor]:
        height, width = image.shape[1:3]
        content, grams = None, None
        tiles = self.tiles(height, width)
        inputs = [self._tile_inputs(image, rows, columns) for rows, columns in tiles]
        for region, targets, masks, regions, shares in inputs:
            part, tile_grams = self._compiled("sums", self._sums, (region.shape, shares))(
                region, targets, masks, regions, shares)
            if part is not None:
                content = part if content is None else [a + b for a, b in zip(content, part)]
            grams = tile_grams if grams is None else [
                [a + b for a, b in zip(total, more)] for total, more in zip(grams, tile_grams)]
        whole = tf.constant(image)
        watched = [grams, whole] + ([] if content is None else [content])
        with tf.GradientTape() as tape:
            tape.watch(watched)
            costs = self.objective.costs_from(content, grams, whole)
            total = tf.reduce_sum(costs["total"])
        costs = {name: tf.reduce_sum(value) for name, value in costs.items()}
        if not gradient:
            return costs, None
        gram_weights, image_gradient, *content_weights = tape.gradient(total, watched)
        content_weights = content_weights[0] if content_weights else None
        result = image_gradient.numpy() if image_gradient is not None else np.zeros_like(image)
        for (rows, columns), (region, targets, masks, regions, shares) in zip(tiles, inputs):
            part = self._compiled("gradient", self._region_gradient, (region.shape, shares))(
                region, targets, masks, regions, shares, content_weights, gram_weights)
            result[:, rows.region_start:rows.region_end,
                   columns.region_start:columns.region_end] += part.numpy()
        return costs, tf.constant(result)

    def costs(self, image: tf.Tensor) -> Costs:
        return self._evaluate(np.asarray(image, np.float32), gradient=False)[0]

    def value_and_gradient(self, image: tf.Tensor) -> tuple[Costs, tf.Tensor]:
        return self._evaluate(np.asarray(image, np.float32), gradient=True)
