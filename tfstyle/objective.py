"""The objective: the costs of an image as a list of named, weighted terms.

    J = α·J_content + β·J_style + tv_weight·J_tv (+ temporal_weight·J_temporal for a video's
    frames after the first, against the previous stylised frame warped to this one)

Each term's formula is in costs.py; this module holds the targets (the content image's
activations and the style image's Gram matrices, taken once per size), the weights, and
--normalize_costs, which divides the content cost and each style layer's cost by their value
for an image with no activations:

    J_content(C, G) / J_content(C, 0) = Σ(a_C − a_G)² / Σa_C²
    J_style^[l](S, G) / J_style^[l](S, 0) = Σ(G_S − G_G)² / ΣG_S²

so each is a relative error, 0 at the target and 1 for a blank image, whatever the pictures,
the layer and the size; α, β and the layer weights then keep their meaning from one pair of
images to the next (without it, VGG19's layers differ by orders of magnitude in style cost,
and the largest drowns the others).

The costs depend on the generated image through sums over its positions (the content cost's
squared differences, each style layer's Gram matrix) and through its pixels (total
variation): `costs_from` takes those sums, so that tiles.py can add them up tile by tile for
an image too large for one pass.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfstyle.config import Config
from tfstyle.costs import (content_cost, gram_matrix, gram_style_cost, temporal_cost,
                           total_variation_cost)
from tfstyle.features import FeatureExtractor, layer_shape
from tfstyle.style import Style, StyleTarget, generated_grams
from tfstyle.style import target as style_target

Costs = dict[str, tf.Tensor]
Features = dict[str, tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Temporal:
    """What a video frame is kept close to (Ruder et al. 2016): the previous stylised frame
    warped along the optical flow to this one, `warped` [B, H, W, 3], and where the flow can be
    trusted, `weights` [B, H, W] (see flow.consistency_weights); both at the frame's size."""
    warped: np.ndarray
    weights: np.ndarray

    def at(self, size: tuple[int, int]) -> "Temporal":
        """Both resized (bilinear) to `size` = (W, H), for a coarser scale."""
        width, height = size
        if self.warped.shape[1:3] == (height, width):
            return self
        warped = tf.image.resize(self.warped, (height, width), method="bilinear")
        weights = tf.image.resize(self.weights[..., None], (height, width), method="bilinear")
        return Temporal(np.clip(warped.numpy(), 0, 1), weights.numpy()[..., 0])


@dataclasses.dataclass(frozen=True)
class Term:
    """One cost and its weight in the total, under `name`; its parts, if any, are reported as
    'name/part' for monitoring."""
    name: str
    weight: float


class Objective:
    """The costs of images [batch, H, W, 3] (RGB in [0, 1], `size` = (W, H)) against
    `content_targets` (each content layer's activations of the content images, one per
    generated image; None for texture synthesis, which has no content term) and `styles` (one
    StyleTarget per style image)."""

    tiled = False

    def __init__(self, config: Config, extractor: FeatureExtractor,
                 content_targets: Optional[Sequence[tf.Tensor]], styles: Sequence[StyleTarget],
                 size: tuple[int, int], temporal: Optional[Temporal] = None) -> None:
        self.config = config
        self.extractor = extractor
        # The targets that change from one video frame to the next are variables, so that a
        # compiled step takes the next frame's (retarget) without being traced again.
        self.content_targets = None if content_targets is None else [
            tf.Variable(target, trainable=False) for target in content_targets]
        self.styles = list(styles)
        self.layer_weights = list(config.style_layer_weights)
        self.content_weights = [weight for _, weight in config.content_layers]
        self.size = size
        width, height = size
        # n_H·n_W·n_C of each style layer for this size: what the style costs divide by.
        self.layer_sizes = [float(np.prod(layer_shape(name, height, width)))
                            for name in config.layer_names]
        self.content_scales: Optional[list[tf.Tensor]] = None
        self.layer_scales: Optional[list[list[tf.Tensor]]] = None
        if config.normalize_costs:
            # The costs of zero activations, per content image and layer and per style and
            # layer; a region of zeros has a zero target and no cost to scale.
            if content_targets is not None:
                self.content_scales = [tf.Variable(scale, trainable=False)
                                       for scale in self._content_scales(content_targets)]
            self.layer_scales = [
                [tf.math.divide_no_nan(1.0, gram_style_cost(gram, tf.zeros_like(gram), size))
                 for gram, size in zip(style.grams, self.layer_sizes)] for style in self.styles]
        self.terms = [Term("style", config.beta)]
        if content_targets is not None:
            self.terms.insert(0, Term("content", config.alpha))
        if config.tv_weight:
            self.terms.append(Term("tv", config.tv_weight))
        self.temporal = None
        if temporal is not None and config.temporal_weight:
            temporal = temporal.at(size)
            self.temporal = (tf.Variable(temporal.warped, trainable=False, dtype=tf.float32),
                             tf.Variable(temporal.weights, trainable=False, dtype=tf.float32))
            self.terms.append(Term("temporal", config.temporal_weight))

    @staticmethod
    def _content_scales(targets: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        return [1.0 / content_cost(target, tf.zeros_like(target)) for target in targets]

    def retarget(self, content: Optional[np.ndarray], temporal: Optional[Temporal]) -> bool:
        """Take the targets of other content images (and another temporal target) in place,
        for the next frame of a video: the styles stay. False, and nothing changed, when they
        do not fit (other shapes, or a term the objective lacks or has)."""
        if (content is None) != (self.content_targets is None) or (
                (temporal is not None and bool(self.config.temporal_weight))
                != (self.temporal is not None)):
            return False
        targets = [] if content is None else content_targets_of(self.config, self.extractor,
                                                                content)
        temporal = None if self.temporal is None else temporal.at(self.size)
        new = [*targets, *(() if temporal is None else (temporal.warped, temporal.weights))]
        old = [*(self.content_targets or ()), *(self.temporal or ())]
        if any(tuple(value.shape) != tuple(variable.shape) for value, variable in zip(new, old)):
            return False
        for variable, value in zip(old, new):
            variable.assign(tf.cast(value, variable.dtype))
        if self.content_scales is not None:
            for variable, scale in zip(self.content_scales, self._content_scales(targets)):
                variable.assign(scale)
        return True

    @property
    def masked(self) -> bool:
        return any(style.masks is not None for style in self.styles)

    @classmethod
    def of_images(cls, config: Config, extractor: FeatureExtractor,
                  content: Optional[np.ndarray], styles: Sequence[Style],
                  size: tuple[int, int], temporal: Optional[Temporal] = None) -> "Objective":
        """The objective of `content` ([batch, H, W, 3], None for a texture), `styles` and a
        video frame's `temporal` target, for generated images of `size` = (W, H)."""
        targets = []
        for style in styles:
            features = extractor(style.image)
            targets.append(style_target(config, style, [gram_matrix(features[name])
                                                        for name in config.layer_names], size))
        content_targets = (None if content is None else
                           content_targets_of(config, extractor, content))
        return cls(config, extractor, content_targets, targets, size, temporal)

    def costs_from(self, content: Optional[Sequence[tf.Tensor]],
                   grams: Sequence[Sequence[tf.Tensor]], image: tf.Tensor) -> Costs:
        """Every term's value per image ([batch]) and their weighted sum 'total', from the
        unweighted content cost at each content layer (None without a content term), the
        generated image's Gram matrices for each style (in its region) and layer, and its
        pixels."""
        parts: Costs = {}
        if content is not None:
            layers = [weight * cost for weight, cost in zip(self.content_weights, content)]
            if self.content_scales is not None:
                layers = [cost * scale for cost, scale in zip(layers, self.content_scales)]
            parts["content"] = tf.add_n(layers)
            if len(layers) > 1:
                parts.update({f"content/{name}": cost
                              for name, cost in zip(self.config.content_layer_names, layers)})
        layers = []  # Σ_s λ_l·w_s·J_style^[l](S_s, G), each relative when normalised
        for index, (weight, size) in enumerate(zip(self.layer_weights, self.layer_sizes)):
            per_style = []
            for number, (style, style_grams) in enumerate(zip(self.styles, grams)):
                term = tf.cast(weight, tf.float32) * (style.weight * gram_style_cost(
                    style.grams[index], style_grams[index], size))
                if self.layer_scales is not None:
                    term = term * self.layer_scales[number][index]
                per_style.append(term)
            layers.append(tf.add_n(per_style))
        parts["style"] = tf.add_n(layers)
        parts.update({f"style/{name}": term for name, term in zip(self.config.layer_names, layers)})
        if self.config.tv_weight:
            parts["tv"] = total_variation_cost(image)
        if self.temporal is not None:
            parts["temporal"] = temporal_cost(image, *self.temporal)
        total = tf.add_n([tf.cast(term.weight, tf.float32) * parts[term.name]
                          for term in self.terms])
        return {"total": total, **parts}

    def image_costs(self, image: tf.Tensor) -> Costs:
        """Every term's value per image ([batch]) and their weighted sum, 'total'."""
        if tuple(image.shape[2:0:-1]) != self.size:
            raise ValueError(f"The objective is for images of {self.size}, not {image.shape}.")
        features = self.extractor(image)
        grams = generated_grams(features, self.config.layer_names,
                                [style.masks for style in self.styles])
        content = (None if self.content_targets is None else
                   [content_cost(target, features[name]) for target, name in
                    zip(self.content_targets, self.config.content_layer_names)])
        return self.costs_from(content, grams, image)

    def costs(self, image: tf.Tensor) -> Costs:
        """image_costs() summed over the batch: image i's gradient comes from its terms alone,
        and one scalar per cost is all the optimisers and the monitors need."""
        return {name: tf.reduce_sum(value) for name, value in self.image_costs(image).items()}

    def value_and_gradient(self, image: tf.Tensor) -> tuple[Costs, tf.Tensor]:
        """costs() and the gradient of the total with respect to the image."""
        with tf.GradientTape() as tape:
            tape.watch(image)
            costs = self.costs(image)
        return costs, tape.gradient(costs["total"], image)


def content_targets_of(config: Config, extractor: FeatureExtractor,
                       content: np.ndarray) -> list[tf.Tensor]:
    """The activations of `content` [batch, H, W, 3] at each content layer."""
    features = extractor(content)
    return [features[name] for name in config.content_layer_names]


def first_bad_cost(costs: dict[str, float]) -> Optional[str]:
    """The most specific cost that is not finite: a part ('style/<layer>') before its term,
    a term before the total."""
    def rank(name: str) -> int:
        return 0 if "/" in name else 2 if name == "total" else 1
    bad = [name for name, value in costs.items() if not np.isfinite(value)]
    return min(bad, key=rank, default=None)
