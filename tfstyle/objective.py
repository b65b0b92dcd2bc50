"""The objective: the costs of an image as a list of named, weighted terms.

    J = α·J_content + β·J_style + tv_weight·J_tv

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
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from tfstyle.config import Config
from tfstyle.costs import (content_cost, gram_matrix, layer_style_cost, total_variation_cost,
                           weighted_style_costs)
from tfstyle.features import FeatureExtractor

Costs = dict[str, tf.Tensor]
Features = dict[str, tf.Tensor]


@dataclasses.dataclass(frozen=True)
class Term:
    """One cost and its weight in the total. `cost(features, image)` returns the term's value
    per image ([batch]) under `name`, and may add its parts as 'name/part' for monitoring."""
    name: str
    weight: float
    cost: Callable[[Features, tf.Tensor], Costs]


class Objective:
    """The costs of images [batch, H, W, 3] (RGB in [0, 1]) against the targets of `content`
    ([batch, H, W, 3], one per generated image) and `style` ([1, h, w, 3]) at this size."""

    def __init__(self, config: Config, extractor: FeatureExtractor, content: np.ndarray,
                 style: np.ndarray) -> None:
        self.config = config
        self.extractor = extractor
        content_features = extractor(content)
        self.content_target = content_features[config.content_layer]
        style_features = extractor(style)
        self.style_grams = [gram_matrix(style_features[name]) for name in config.layer_names]
        self.layer_weights = [weight for _, weight in config.style_layers]
        self.content_scale: Optional[tf.Tensor] = None
        self.layer_scales: Optional[list[tf.Tensor]] = None
        if config.normalize_costs:
            # The costs of zero activations, per content image and per style layer, at the
            # generated image's layer sizes (which the normalisation of the formulas uses).
            self.content_scale = 1.0 / content_cost(self.content_target,
                                                    tf.zeros_like(self.content_target))
            self.layer_scales = [
                1.0 / layer_style_cost(gram, tf.zeros_like(content_features[name][:1]))
                for gram, name in zip(self.style_grams, config.layer_names)]
        self.terms = [Term("content", config.alpha, self._content),
                      Term("style", config.beta, self._style)]
        if config.tv_weight:
            self.terms.append(Term("tv", config.tv_weight, self._total_variation))

    def _content(self, features: Features, image: tf.Tensor) -> Costs:
        cost = content_cost(self.content_target, features[self.config.content_layer])
        return {"content": cost if self.content_scale is None else cost * self.content_scale}

    def _style(self, features: Features, image: tf.Tensor) -> Costs:
        """β's term, with each weighted layer λ_l·J_style^[l] kept for monitoring."""
        layers = weighted_style_costs(
            self.style_grams, [features[name] for name in self.config.layer_names],
            self.layer_weights)
        if self.layer_scales is not None:
            layers = [term * scale for term, scale in zip(layers, self.layer_scales)]
        return {"style": tf.add_n(layers),
                **{f"style/{name}": term for name, term in zip(self.config.layer_names, layers)}}

    def _total_variation(self, features: Features, image: tf.Tensor) -> Costs:
        return {"tv": total_variation_cost(image)}

    def image_costs(self, image: tf.Tensor) -> Costs:
        """Every term's value per image ([batch]) and their weighted sum, 'total'."""
        features = self.extractor(image)
        parts: Costs = {}
        for term in self.terms:
            parts.update(term.cost(features, image))
        total = tf.add_n([tf.cast(term.weight, tf.float32) * parts[term.name]
                          for term in self.terms])
        return {"total": total, **parts}

    def costs(self, image: tf.Tensor) -> Costs:
        """image_costs() summed over the batch: image i's gradient comes from its terms alone,
        and one scalar per cost is all the optimisers and the monitors need."""
        return {name: tf.reduce_sum(value) for name, value in self.image_costs(image).items()}


def first_bad_cost(costs: dict[str, float]) -> Optional[str]:
    """The most specific cost that is not finite: a part ('style/<layer>') before its term,
    a term before the total."""
    def rank(name: str) -> int:
        return 0 if "/" in name else 2 if name == "total" else 1
    bad = [name for name, value in costs.items() if not np.isfinite(value)]
    return min(bad, key=rank, default=None)
