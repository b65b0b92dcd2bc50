"""The style transfer costs in the Coursera formulation of Gatys et al., written once.

J(G) = α·J_content(C, G) + β·J_style(S, G), where for activations a of shape
[batch, n_H, n_W, n_C] at the chosen layers

    J_content      = Σ (a_C − a_G)² / (4·n_H·n_W·n_C)
    J_style^[l]    = Σ (G_S − G_G)² / (2·n_H·n_W·n_C)²    with G = Fᵀ·F, F = a as [n_H·n_W, n_C]
    J_style        = Σ_l λ_l · J_style^[l]

Every image in the batch is optimised independently, so the costs are [batch] vectors:
summing them gives the course's scalar for a batch of one. Everything is computed in float32
(inputs are cast first) and works eagerly, in tf.function and under XLA with static or
dynamic shapes.
"""
from __future__ import annotations

from typing import Sequence, Union

import tensorflow as tf

TensorLike = Union[tf.Tensor, tf.Variable, float, int]
# Keeps σ and its gradient finite where a channel is constant (ReLU zeros, flat regions).
MOMENT_EPSILON = 1e-5


def _dims(features: tf.Tensor) -> list:
    # Python ints where the static shape knows them keep the static shapes downstream;
    # tf.shape fills in the dimensions only known when the graph runs.
    dynamic = tf.shape(features)
    return [size if size is not None else dynamic[i]
            for i, size in enumerate(features.shape.as_list())]


def layer_size(features: tf.Tensor) -> tf.Tensor:
    """n_H·n_W·n_C of activations [batch, n_H, n_W, n_C], as float32: (2·n_H·n_W·n_C)² overflows
    int32 for ordinary VGG layers."""
    _, height, width, channels = _dims(features)
    return tf.cast(height, tf.float32) * tf.cast(width, tf.float32) * tf.cast(channels, tf.float32)


def gram_matrix(features: TensorLike) -> tf.Tensor:
    """Gram (style) matrices G = Fᵀ·F of activations [batch, n_H, n_W, n_C] -> [batch, n_C, n_C].

    F is each image's activations unrolled to [n_H·n_W, n_C], so G[i, j] is the dot product of
    channel i's and channel j's responses over all positions.
    """
    # Cast before the matmul: float16 Grams of VGG activations overflow.
    features = tf.cast(features, tf.float32)
    batch, _, _, channels = _dims(features)
    unrolled = tf.reshape(features, [batch, -1, channels])
    return tf.matmul(unrolled, unrolled, transpose_a=True)


def content_cost(content_features: TensorLike, generated_features: TensorLike) -> tf.Tensor:
    """J_content = Σ (a_C − a_G)² / (4·n_H·n_W·n_C) per generated image -> [batch].

    content_features may have batch 1 and is then compared with every generated image;
    n_H, n_W, n_C are the generated activations' sizes.
    """
    content_features = tf.cast(content_features, tf.float32)
    generated_features = tf.cast(generated_features, tf.float32)
    squared = tf.reduce_sum(tf.square(content_features - generated_features), axis=[1, 2, 3])
    return squared / (4.0 * layer_size(generated_features))


def layer_style_cost(style_gram: TensorLike, generated_features: TensorLike) -> tf.Tensor:
    """J_style^[l] = Σ (G_S − G_G)² / (2·n_H·n_W·n_C)² per generated image -> [batch].

    style_gram is gram_matrix() of the style image's activations, [1 or batch, n_C, n_C]; it
    is a Gram rather than activations because the style image never changes, so callers
    compute it once. G_G and n_H, n_W, n_C come from generated_features.
    """
    generated_features = tf.cast(generated_features, tf.float32)
    return gram_style_cost(style_gram, gram_matrix(generated_features),
                           layer_size(generated_features))


def gram_style_cost(style_gram: TensorLike, generated_gram: TensorLike,
                    layer_size: TensorLike) -> tf.Tensor:
    """J_style^[l] = Σ (G_S − G_G)² / (2·layer_size)² from the Gram matrices -> [batch], with
    layer_size = n_H·n_W·n_C of the generated activations (layer_style_cost, when the Gram of
    the generated image is summed over tiles rather than taken at once)."""
    style_gram = tf.cast(style_gram, tf.float32)
    generated_gram = tf.cast(generated_gram, tf.float32)
    squared = tf.reduce_sum(tf.square(style_gram - generated_gram), axis=[1, 2])
    return squared / tf.square(2.0 * tf.cast(layer_size, tf.float32))


def weighted_style_costs(style_grams: Sequence[TensorLike],
                         generated_features: Sequence[TensorLike],
                         layer_weights: Sequence[TensorLike]) -> list[tf.Tensor]:
    """λ_l · J_style^[l] for each style layer l, in order -> list of [batch].

    The terms stay separate so that monitoring can show each layer; style_cost() sums them.
    """
    if not len(style_grams) == len(generated_features) == len(layer_weights):
        raise ValueError(
            f"Style costs need one Gram, one activation tensor and one weight per layer; got "
            f"{len(style_grams)} Grams, {len(generated_features)} activation tensors and "
            f"{len(layer_weights)} weights.")
    if not style_grams:
        raise ValueError("Style costs need at least one style layer.")
    return [tf.cast(weight, tf.float32) * layer_style_cost(gram, features)
            for gram, features, weight in zip(style_grams, generated_features, layer_weights)]


def style_cost(style_grams: Sequence[TensorLike], generated_features: Sequence[TensorLike],
               layer_weights: Sequence[TensorLike]) -> tf.Tensor:
    """J_style = Σ_l λ_l · J_style^[l] -> [batch]; arguments as for weighted_style_costs()."""
    return tf.add_n(weighted_style_costs(style_grams, generated_features, layer_weights))


def channel_moments(features: TensorLike, region: TensorLike = None
                    ) -> tuple[tf.Tensor, tf.Tensor]:
    """(μ, σ) of each channel over the positions of activations [batch, n_H, n_W, n_C] ->
    two [batch, n_C]: μ = Σ m·a / Σ m, σ = √(Σ m·(a − μ)² / Σ m + ε), the positions weighted by
    `region` [1 or batch, n_H, n_W, 1] (None: all equally; an empty region gives μ = 0)."""
    features = tf.cast(features, tf.float32)
    if region is None:
        region = tf.ones_like(features[..., :1])
    region = tf.cast(region, tf.float32)
    area = tf.reduce_sum(region * tf.ones_like(features[..., :1]), axis=[1, 2])
    mean = tf.math.divide_no_nan(tf.reduce_sum(region * features, axis=[1, 2]), area)
    variance = tf.math.divide_no_nan(
        tf.reduce_sum(region * tf.square(features - mean[:, None, None, :]), axis=[1, 2]), area)
    return mean, tf.sqrt(variance + MOMENT_EPSILON)


def moment_style_cost(style_moments: tuple[TensorLike, TensorLike],
                      generated_features: TensorLike) -> tf.Tensor:
    """J_moments^[l] = (Σ_c (μ_S − μ_G)² + Σ_c (σ_S − σ_G)²) / n_C per generated image ->
    [batch] (Huang & Belongie 2017): the style as each channel's mean and spread alone, from
    the style image's channel_moments [1 or batch, n_C] at layer l."""
    style_mean, style_std = (tf.cast(value, tf.float32) for value in style_moments)
    mean, std = channel_moments(generated_features)
    squared = (tf.reduce_sum(tf.square(style_mean - mean), axis=-1)
               + tf.reduce_sum(tf.square(style_std - std), axis=-1))
    return squared / tf.cast(tf.shape(mean)[-1], tf.float32)


def total_cost(content: TensorLike, style: TensorLike, alpha: TensorLike,
               beta: TensorLike) -> tf.Tensor:
    """J = α·J_content + β·J_style (elementwise, so [batch] costs give a [batch] total)."""
    return (tf.cast(alpha, tf.float32) * tf.cast(content, tf.float32)
            + tf.cast(beta, tf.float32) * tf.cast(style, tf.float32))


def total_variation_cost(images: TensorLike) -> tf.Tensor:
    """J_tv = Σ_{i,j,c} [(x_{i+1,j,c} − x_{i,j,c})² + (x_{i,j+1,c} − x_{i,j,c})²] / (n_H·n_W)
    per image of [batch, n_H, n_W, n_C] -> [batch]: the squared size of the image's gradient,
    per pixel, which is large for noise and small for smooth areas."""
    images = tf.cast(images, tf.float32)
    _, height, width, _ = _dims(images)
    vertical = tf.reduce_sum(tf.square(images[:, 1:] - images[:, :-1]), axis=[1, 2, 3])
    horizontal = tf.reduce_sum(tf.square(images[:, :, 1:] - images[:, :, :-1]), axis=[1, 2, 3])
    return (vertical + horizontal) / (tf.cast(height, tf.float32) * tf.cast(width, tf.float32))


def temporal_cost(images: TensorLike, warped: TensorLike, weights: TensorLike) -> tf.Tensor:
    """J_temporal = Σ_{i,j,c} w_{i,j}·(x_{i,j,c} − ω_{i,j,c})² / (n_H·n_W·n_C) per image of
    [batch, n_H, n_W, n_C] -> [batch] (Ruder et al. 2016): the squared difference from ω, the
    previous stylised frame warped along the optical flow, where the flow can be trusted
    (`weights` [batch, n_H, n_W] of 0 or 1, see flow.consistency_weights)."""
    images = tf.cast(images, tf.float32)
    _, height, width, channels = _dims(images)
    squared = tf.square(images - tf.cast(warped, tf.float32)) * tf.cast(weights, tf.float32)[..., None]
    return tf.reduce_sum(squared, axis=[1, 2, 3]) / (
        tf.cast(height, tf.float32) * tf.cast(width, tf.float32) * tf.cast(channels, tf.float32))
