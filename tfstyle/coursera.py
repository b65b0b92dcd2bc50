"""The Coursera notebook's API (Deep Learning Specialization, course 4 week 4, "Art Generation
with Neural Style Transfer"), with the course's names and signatures, on top of tfstyle.costs.

    from tfstyle.coursera import *

gives a learner's notebook compute_content_cost, gram_matrix, compute_layer_style_cost,
compute_style_cost, total_cost and the notebook's layer choices. The maths lives only in
tfstyle.costs; this module adapts the course's shapes (lists of layer outputs, Gram matrices of
(n_C, n_H·n_W) matrices, scalar costs for one image) to it. Eager calls return EagerTensors,
as the course's tests require.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from tfstyle import costs

__all__ = ["STYLE_LAYERS", "CONTENT_LAYER", "content_layer", "compute_content_cost",
           "gram_matrix", "compute_layer_style_cost", "compute_style_cost", "total_cost"]

# The notebook's choice: the first convolution of each VGG19 block, equally weighted.
STYLE_LAYERS = [
    ('block1_conv1', 0.2),
    ('block2_conv1', 0.2),
    ('block3_conv1', 0.2),
    ('block4_conv1', 0.2),
    ('block5_conv1', 0.2)]

# The notebook calls this `content_layer` (lower case): a one-element list of a (name, weight)
# pair, so that `STYLE_LAYERS + content_layer` lists every layer the VGG model must output,
# with the content layer last.
content_layer = [('block5_conv4', 1)]
CONTENT_LAYER = content_layer


def compute_content_cost(content_output: Sequence[tf.Tensor],
                         generated_output: Sequence[tf.Tensor]) -> tf.Tensor:
    """J_content of the last layer output of each (the content layer), a scalar.

    content_output, generated_output: the VGG model's outputs for the content image and the
    generated image; their last elements are activations of shape (1, n_H, n_W, n_C).
    """
    a_C = content_output[-1]
    a_G = generated_output[-1]
    # Summing the per-image costs is the course's sum over all entries, whatever the batch.
    return tf.reduce_sum(costs.content_cost(a_C, a_G))


def gram_matrix(A: tf.Tensor) -> tf.Tensor:
    """Gram matrix A·Aᵀ of A with shape (n_C, n_H·n_W) -> (n_C, n_C)."""
    # The course lays out channels as rows; costs.gram_matrix takes [batch, n_H, n_W, n_C],
    # so present Aᵀ as a single image one pixel high and n_H·n_W pixels wide.
    features = tf.transpose(A)[tf.newaxis, tf.newaxis]
    return costs.gram_matrix(features)[0]


def compute_layer_style_cost(a_S: tf.Tensor, a_G: tf.Tensor) -> tf.Tensor:
    """J_style^[l] of one layer, a scalar; a_S and a_G have shape (1, n_H, n_W, n_C)."""
    return tf.reduce_sum(costs.layer_style_cost(costs.gram_matrix(a_S), a_G))


def compute_style_cost(style_image_output: Sequence[tf.Tensor],
                       generated_image_output: Sequence[tf.Tensor],
                       STYLE_LAYERS: Sequence[tuple[str, float]] = STYLE_LAYERS) -> tf.Tensor:
    """J_style = Σ_l λ_l·J_style^[l], a scalar, over every output but the last (the content
    layer's), with λ_l the second element of the matching STYLE_LAYERS pair.

    Unlike the notebook's zip(), a STYLE_LAYERS of a different length from the style outputs
    is an error (ValueError) rather than silently dropping layers.
    """
    a_S = style_image_output[:-1]
    a_G = generated_image_output[:-1]
    style_grams = [costs.gram_matrix(a) for a in a_S]
    weights = [weight for _, weight in STYLE_LAYERS]
    return tf.reduce_sum(costs.style_cost(style_grams, a_G, weights))


@tf.function()
def total_cost(J_content: costs.TensorLike, J_style: costs.TensorLike,
               alpha: costs.TensorLike = 10, beta: costs.TensorLike = 40) -> tf.Tensor:
    """J = α·J_content + β·J_style. A tf.function, as in the notebook (its test checks that)."""
    return costs.total_cost(J_content, J_style, alpha, beta)
