"""Feed-forward style networks: a photo in, its stylised version out in one pass.

Johnson et al. 2016's image transformation network, with Ulyanov et al.'s instance
normalisation in place of batch normalisation:

    c9-w, d-2w, d-4w, R-4w × blocks, u-2w, u-w, c9-3, sigmoid

(c9: 9×9 convolution, stride 1; d: 3×3, stride 2; R: a residual block of two 3×3
convolutions; u: 2× nearest-neighbour resize and a 3×3 convolution; w the width, 32 in the
paper). Every convolution pads by reflection, so no border of zeros is painted, and the
upsampling resizes before it convolves instead of using a transposed convolution, whose
uneven overlap prints a checkerboard (Odena et al. 2016). Instance normalisation takes each
image's own channel statistics,

    IN(x) = γ·(x − μ(x)) / √(σ²(x) + ε) + β,  μ, σ² over the positions of one image,

which removes the content photo's contrast before the style is painted; conditional instance
normalisation (Dumoulin et al. 2017) keeps one (γ, β) per style and mixes them by the
style weights the network is given, so one network holds several styles.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

# Each image's sides must divide by this for the output to have the input's size (two
# stride-2 convolutions, then two 2× resizes); apply_network pads by reflection to it.
SIDE_MULTIPLE = 4
EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="tfstyle")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width by `padding` on each side with their mirror image."""

    def __init__(self, padding: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = padding

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        pad = self.padding
        return tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="tfstyle")
class InstanceNormalization(keras.layers.Layer):
    """IN(x) = γ·(x − μ)/√(σ² + ε) + β per image and channel. With `styles` > 1, conditional:
    the layer is called on [x, mix], mix [batch, styles] the style weights, and uses
    γ = mix·Γ, β = mix·B from one row of Γ, B [styles, channels] per style."""

    def __init__(self, styles: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.styles = styles

    def build(self, input_shape: Any) -> None:
        shape = input_shape[0] if self.styles > 1 else input_shape
        channels = int(shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(self.styles, channels),
                                     initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(self.styles, channels),
                                    initializer="zeros")

    def call(self, inputs: Any) -> tf.Tensor:
        if self.styles > 1:
            inputs, mix = inputs
            mix = tf.cast(mix, inputs.dtype)
        else:
            mix = tf.ones([tf.shape(inputs)[0], 1], inputs.dtype)
        mean, variance = tf.nn.moments(inputs, axes=[1, 2], keepdims=True)
        gamma = tf.matmul(mix, tf.cast(self.gamma, inputs.dtype))[:, None, None, :]
        beta = tf.matmul(mix, tf.cast(self.beta, inputs.dtype))[:, None, None, :]
        return gamma * (inputs - mean) * tf.math.rsqrt(variance + EPSILON) + beta

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "styles": self.styles}


@keras.saving.register_keras_serializable(package="tfstyle")
class ChannelSlice(keras.layers.Layer):
    """Channels start..stop − 1 of its input (a layer, not a Lambda, so that a saved model
    loads in Keras' safe mode)."""

    def __init__(self, start: int, stop: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs[..., self.start:self.stop]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def johnson_network(width: int = 32, residual_blocks: int = 5, styles: int = 1,
                    name: str = "johnson") -> keras.Model:
    """The transformation network: images [batch, H, W, 3] in [0, 1] (H and W multiples of
    SIDE_MULTIPLE) to stylised images of the same shape in [0, 1]; with `styles` > 1 a second
    input, the style weights [batch, styles], selects or mixes the styles."""
    image = keras.Input((None, None, 3), name="image")
    mix = keras.Input((styles,), name="style_weights") if styles > 1 else None

    def normalised(x: tf.Tensor, label: str) -> tf.Tensor:
        layer = InstanceNormalization(styles, name=f"{label}_norm")
        return layer([x, mix] if mix is not None else x)

    def convolution(x: tf.Tensor, filters: int, size: int, label: str, stride: int = 1,
                    relu: bool = True) -> tf.Tensor:
        x = ReflectionPadding2D(size // 2, name=f"{label}_pad")(x)
        x = keras.layers.Conv2D(filters, size, stride, "valid", name=f"{label}_conv")(x)
        x = normalised(x, label)
        return keras.layers.ReLU(name=f"{label}_relu")(x) if relu else x

    x = convolution(image, width, 9, "c1")
    x = convolution(x, 2 * width, 3, "d1", stride=2)
    x = convolution(x, 4 * width, 3, "d2", stride=2)
    for block in range(1, residual_blocks + 1):
        y = convolution(x, 4 * width, 3, f"r{block}a")
        y = convolution(y, 4 * width, 3, f"r{block}b", relu=False)
        x = keras.layers.Add(name=f"r{block}_add")([x, y])
    for number, filters in enumerate((2 * width, width), 1):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"u{number}_resize")(x)
        x = convolution(x, filters, 3, f"u{number}")
    x = ReflectionPadding2D(4, name="out_pad")(x)
    x = keras.layers.Conv2D(3, 9, name="out_conv")(x)
    out = keras.layers.Activation("sigmoid", dtype="float32", name="out")(x)
    return keras.Model([image, mix] if mix is not None else image, out, name=name)


def texture_network(width: int = 8, levels: int = 5, name: str = "texture") -> keras.Model:
    """Ulyanov et al. 2016's multi-scale texture generator, with instance normalisation
    (Ulyanov et al. 2017): noise [batch, H, W, 3·levels] (uniform in [0, 1]; H and W multiples
    of 2^(levels − 1)) to a texture [batch, H, W, 3] in [0, 1]. Level k takes channels 3k..3k+2
    averaged over 2^k × 2^k blocks (and rescaled to keep their spread), a coarser version of
    the same noise; each level's features are upsampled and joined with the next finer one's,
    so the coarse levels lay out the large structures and the fine ones the detail."""
    noise = keras.Input((None, None, 3 * levels), name="noise")

    def block(x: tf.Tensor, filters: int, label: str) -> tf.Tensor:
        for number, size in enumerate((3, 3, 1), 1):
            if size > 1:
                x = ReflectionPadding2D(size // 2, name=f"{label}_pad{number}")(x)
            x = keras.layers.Conv2D(filters, size, name=f"{label}_conv{number}")(x)
            x = InstanceNormalization(name=f"{label}_norm{number}")(x)
            x = keras.layers.LeakyReLU(0.01, name=f"{label}_relu{number}")(x)
        return x

    def level(k: int) -> tf.Tensor:
        z = ChannelSlice(3 * k, 3 * k + 3, name=f"z{k}")(noise)
        if k:
            z = keras.layers.AveragePooling2D(2 ** k, name=f"z{k}_pool")(z)
            z = keras.layers.Rescaling(2.0 ** k, offset=0.5 - 0.5 * 2.0 ** k, name=f"z{k}_spread")(z)
        return block(z, width, f"level{k}")

    x = level(levels - 1)
    for k in range(levels - 2, -1, -1):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{k}")(x)
        x = keras.layers.Concatenate(name=f"join{k}")([x, level(k)])
        x = block(x, width * (levels - k), f"joined{k}")
    x = keras.layers.Conv2D(3, 1, name="out_conv")(x)
    out = keras.layers.Activation("sigmoid", dtype="float32", name="out")(x)
    return keras.Model(noise, out, name=name)


def texture_levels(network: keras.Model) -> int:
    """A texture network's levels (0: not a texture network): one ChannelSlice of its noise
    per level."""
    return sum(isinstance(layer, ChannelSlice) for layer in network.layers)


def side_multiple(network: keras.Model) -> int:
    """What the input's sides must divide by for the output to keep their size."""
    levels = texture_levels(network)
    return 2 ** (levels - 1) if levels else SIDE_MULTIPLE


def texture_noise(batch: int, height: int, width: int, levels: int, seed: Any) -> np.ndarray:
    """Uniform noise [batch, H, W, 3·levels] in [0, 1], the same for the same `seed`."""
    return np.random.default_rng(seed).random((batch, height, width, 3 * levels), np.float32)


def pad_to_multiple(images: tf.Tensor, multiple: int) -> tf.Tensor:
    """Images [batch, H, W, C] padded at the bottom and right by reflection to sides that are
    multiples of `multiple`."""
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = images.shape[1], images.shape[2]
    return tf.pad(images, [[0, 0], [0, -height % multiple], [0, -width % multiple], [0, 0]],
                  mode="REFLECT")


def apply_network(network: keras.Model, images: tf.Tensor,
                  style_weights: Any = None) -> tf.Tensor:
    """`network` on images (or a texture network's noise) [batch, H, W, C] of any size: padded
    by reflection to multiples of side_multiple, and the output cut back to H×W."""
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = images.shape[1], images.shape[2]
    padded = pad_to_multiple(images, side_multiple(network))
    inputs = padded if style_weights is None else [
        padded, tf.broadcast_to(tf.convert_to_tensor(style_weights, tf.float32),
                                [images.shape[0], len(style_weights)])]
    return network(inputs, training=False)[:, :height, :width]
