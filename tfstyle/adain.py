"""Any style in one pass: adaptive instance normalisation (Huang & Belongie 2017).

VGG19 up to block4_conv1 (relu4_1), frozen, encodes the photo c and the style image s; AdaIN
gives the photo's features the style's channel statistics,

    t = AdaIN(f(c), f(s)) = σ(f(s))·(f(c) − μ(f(c))) / σ(f(c)) + μ(f(s)),

and a trained decoder g paints g(t). The decoder learns, over many photos and paintings,

    J(g) = α·J_content(t, f(g(t))) + β·Σ_l λ_l·J_moments^[l](s, g(t)) + tv_weight·J_tv(g(t))

(costs.content_cost at the AdaIN target; costs.moment_style_cost at the style layers; with
--normalize_costs each term relative to its target's own size, as in the optimisation). At
run time the style's strength α ∈ [0, 1] blends the target with the photo's own features, and
several styles blend by their weights w_k and regions m_k, each style's statistics of the
photo taken over its region:

    t = f(c) + α·Σ_k c_k·(AdaIN_k − f(c)),   c_k = w_k·m_k / Σ_j w_j·m_j · min(1, Σ_j m_j)

(a grey region, or none, lets the photo's own features through). The style cost is the
squared-difference form of the official code, J_moments = (Σ_c (μ_S − μ_G)² + (σ_S − σ_G)²)/n_C,
where the paper writes L2 norms; the paper's style layers are block1_conv1..block4_conv1.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfstyle.config import Config
from tfstyle.costs import (channel_moments, content_cost, moment_style_cost,
                           total_variation_cost)
from tfstyle.features import FeatureExtractor
from tfstyle.networks import ReflectionPadding2D, pad_to_multiple
from tfstyle.objective import Costs
from tfstyle.style import Style, layer_masks

ENCODER_LAYER = "block4_conv1"
ENCODER_CHANNELS = 512
# block4_conv1 sees the image at an eighth of its size: the sides of what the decoder paints.
SIDE_MULTIPLE = 8
# Keras' VGG19 sees pixels of 0..255, so its block4_conv1 activations run to the thousands
# (about 600 ± 1000 on photos): the decoder takes them a thousandth the size, so that its
# freshly initialised layers start near unit scale and its sigmoid is not saturated.
FEATURE_SCALE = 1e-3


def decoder(width: int = 32, name: str = "adain_decoder") -> keras.Model:
    """The decoder of Huang & Belongie: block4_conv1 activations [batch, h, w, 512] to images
    [batch, 8h, 8w, 3] in [0, 1], VGG19's layers mirrored (their widths 256, 128, 64 scaled to
    4w, 2w, w; 3×3 convolutions padded by reflection; nearest-neighbour upsampling; no
    normalisation, which would undo the statistics AdaIN set)."""
    features = keras.Input((None, None, ENCODER_CHANNELS), name="features")

    def convolution(x: tf.Tensor, filters: int, label: str) -> tf.Tensor:
        x = ReflectionPadding2D(1, name=f"{label}_pad")(x)
        x = keras.layers.Conv2D(filters, 3, name=f"{label}_conv")(x)
        return keras.layers.ReLU(name=f"{label}_relu")(x)

    x = keras.layers.Rescaling(FEATURE_SCALE, name="scale")(features)
    x = convolution(x, 4 * width, "d4_1")
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name="up3")(x)
    for number in (4, 3, 2):
        x = convolution(x, 4 * width, f"d3_{number}")
    x = convolution(x, 2 * width, "d3_1")
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name="up2")(x)
    x = convolution(x, 2 * width, "d2_2")
    x = convolution(x, width, "d2_1")
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name="up1")(x)
    x = convolution(x, width, "d1_2")
    x = ReflectionPadding2D(1, name="out_pad")(x)
    x = keras.layers.Conv2D(3, 3, name="out_conv")(x)
    out = keras.layers.Activation("sigmoid", dtype="float32", name="out")(x)
    return keras.Model(features, out, name=name)


def is_decoder(network: keras.Model) -> bool:
    """Whether `network` paints from block4_conv1 activations (an AdaIN decoder)."""
    return tuple(network.inputs[0].shape[1:]) == (None, None, ENCODER_CHANNELS)


def encoder(config: Config, style_layers: Sequence[str] = ()) -> FeatureExtractor:
    """VGG19 (the config's weights, preprocessing and precision) up to block4_conv1, and to
    the style layers the training costs read."""
    return FeatureExtractor((ENCODER_LAYER, *style_layers), config.weights, config.preprocess,
                            config.precision, config.pooling)


def adaptive_instance_normalization(content: tf.Tensor, style_mean: tf.Tensor,
                                    style_std: tf.Tensor, region: Optional[tf.Tensor] = None
                                    ) -> tf.Tensor:
    """AdaIN(x, s) = σ_s·(x − μ(x))/σ(x) + μ_s for activations x [batch, h, w, C] and the
    style's channel moments [1 or batch, C]; μ(x), σ(x) over `region` (None: everywhere)."""
    mean, std = channel_moments(content, region)
    return (style_std[:, None, None, :] * (content - mean[:, None, None, :])
            / std[:, None, None, :] + style_mean[:, None, None, :])


def blended_target(content: tf.Tensor, moments: Sequence[tuple[tf.Tensor, tf.Tensor]],
                   weights: Sequence[float], regions: Sequence[Optional[tf.Tensor]],
                   alpha: float = 1.0, valid: Optional[tf.Tensor] = None) -> tf.Tensor:
    """t = f(c) + α·Σ_k c_k·(AdaIN_k − f(c)) with c_k = w_k·m_k / Σ_j w_j·m_j · min(1, Σ_j m_j)
    (see the module): where the regions overlap the styles share by weight, where they cover
    less than the whole (grey, or none) the photo's own features show through. Each style's
    statistics of the photo are taken over its region within `valid` (where the photo is, not
    its padding; None: everywhere)."""
    whole = tf.ones([1, 1, 1, 1])
    regions = [whole if region is None else tf.convert_to_tensor(region, tf.float32)
               for region in regions]
    shares = [weight * region for weight, region in zip(weights, regions)]
    total, coverage = functools.reduce(tf.add, shares), functools.reduce(tf.add, regions)
    target = content
    for (mean, std), share, region in zip(moments, shares, regions):
        styled = adaptive_instance_normalization(
            content, mean, std, region if valid is None else region * valid)
        blend = tf.math.divide_no_nan(share, total) * tf.minimum(1.0, coverage)
        target = target + alpha * blend * (styled - content)
    return target


def stylise(network: keras.Model, extractor: FeatureExtractor, photos: np.ndarray,
            styles: Sequence[Style], alpha: float = 1.0) -> np.ndarray:
    """Photos [batch, H, W, 3] in [0, 1] painted by the decoder `network` in `styles` (each
    image [1 or batch, h, w, 3], weight and region [H, W]), at strength `alpha`."""
    height, width = photos.shape[1:3]
    padded = pad_to_multiple(photos, SIDE_MULTIPLE)
    padding = [[0, padded.shape[1] - height], [0, padded.shape[2] - width]]

    def at_encoder(mask: np.ndarray, mode: str) -> tf.Tensor:
        return layer_masks(np.pad(mask, padding, mode), [ENCODER_LAYER])[0]

    content = extractor(padded)[ENCODER_LAYER]
    moments = [channel_moments(extractor(style.image)[ENCODER_LAYER]) for style in styles]
    regions = [None if style.mask is None else at_encoder(style.mask, "reflect")
               for style in styles]
    valid = at_encoder(np.ones((height, width), np.float32), "constant")
    target = blended_target(content, moments, [style.weight for style in styles], regions,
                            alpha, valid)
    return network(target, training=False)[:, :height, :width].numpy()


def training_costs(config: Config, extractor: FeatureExtractor, target: tf.Tensor,
                   style_features: dict[str, tf.Tensor], image: tf.Tensor) -> Costs:
    """The module's J of the pictures `image` decoded from the AdaIN `target`, towards the
    style images' activations `style_features`, with its terms; summed over the batch."""
    features = extractor(image)
    content = content_cost(target, features[ENCODER_LAYER])
    if config.normalize_costs:
        content = tf.math.divide_no_nan(content, content_cost(target, tf.zeros_like(target)))
    layers = []
    for name, weight in zip(config.layer_names, config.style_layer_weights):
        moments = channel_moments(style_features[name])
        term = moment_style_cost(moments, features[name])
        if config.normalize_costs:
            term = tf.math.divide_no_nan(term, moment_style_cost(
                moments, tf.zeros_like(features[name])))
        layers.append(weight * term)
    parts = {"content": content, "style": tf.add_n(layers),
             **{f"style/{name}": term for name, term in zip(config.layer_names, layers)}}
    total = config.alpha * content + config.beta * parts["style"]
    if config.tv_weight:
        parts["tv"] = total_variation_cost(image)
        total = total + config.tv_weight * parts["tv"]
    return {name: tf.reduce_sum(value) for name, value in {"total": total, **parts}.items()}
