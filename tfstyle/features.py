"""The VGG19 feature extractor: activations of exactly the layers the costs use."""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator, Sequence

import keras
import tensorflow as tf

from tfstyle.errors import UserError
from tfstyle.weights import load_vgg19

# Caffe-style ImageNet statistics that Keras' VGG19 weights were trained with (BGR order).
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def imagenet_preprocess(images: tf.Tensor) -> tf.Tensor:
    """RGB in [0, 1] -> what VGG19 saw in training: x·255, RGB→BGR, minus the channel means."""
    return images[..., ::-1] * 255.0 - tf.constant(IMAGENET_BGR_MEAN, images.dtype)


@contextlib.contextmanager
def dtype_policy_scope(name: str) -> Iterator[None]:
    """Keras' global dtype policy set to `name` for the layers built inside, and restored after,
    so that one mixed-precision run does not leak its policy into the user's own models."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


@tf.custom_gradient
def frozen_conv2d(inputs: tf.Tensor, kernel: tf.Tensor, flipped_kernel: tf.Tensor):
    """y = x ⋆ k (stride 1, 'SAME', odd kernel), differentiable in x only (the weights are frozen).

    dJ/dx = dJ/dy ⋆ k̃ with k̃[i, j, o, c] = k[-i, -j, c, o]: the kernel turned 180° in space with
    its channels swapped. Given k̃ ready-made, that is a forward convolution, which runs 7-20%
    faster on CPU than TF's Conv2DBackpropInput or XLA's form (which transposes k every step).
    """
    def gradient(upstream: tf.Tensor):
        return tf.nn.conv2d(upstream, flipped_kernel, 1, "SAME"), None, None
    return tf.nn.conv2d(inputs, kernel, 1, "SAME"), gradient


class FrozenConv2D(keras.layers.Conv2D):
    """VGG's Conv2D computing the same values through frozen_conv2d; freeze() after the weights
    are set."""

    flipped_kernel = None

    def freeze(self) -> None:
        # In the compute dtype, so a mixed-precision step does not cast it again every step.
        self.flipped_kernel = tf.cast(tf.transpose(tf.reverse(self.kernel, [0, 1]), [0, 1, 3, 2]),
                                      self.compute_dtype)

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        if self.flipped_kernel is None:
            raise RuntimeError(f"{self.name}: call freeze() once its weights are set")
        return frozen_conv2d(inputs, tf.convert_to_tensor(kernel), self.flipped_kernel)


def _pooling_tiles(inputs: tf.Tensor) -> tf.Tensor:
    """[batch, H, W, C] -> [batch, H/2, 2, W/2, 2, C]: the 2×2 tiles of a stride-2 pooling."""
    batch, height, width, channels = keras.ops.shape(inputs)
    height, width = height // 2, width // 2  # 'valid': an odd last row or column is dropped
    return tf.reshape(inputs[:, :2 * height, :2 * width], [batch, height, 2, width, 2, channels])


class TiledMaxPooling2D(keras.layers.MaxPooling2D):
    """VGG's 2×2, stride-2 max-pooling as a reshape into tiles and a max over each: the same
    values, but its gradient is elementwise, which XLA fuses, where MaxPoolGrad is a scatter
    (11% of the step here, and XLA has no deterministic one). Tied maxima share the gradient."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.reduce_max(_pooling_tiles(inputs), axis=[2, 4])


class TiledAveragePooling2D(keras.layers.MaxPooling2D):
    """--pooling=avg: the mean of each 2×2 tile in place of VGG's max (Gatys et al. 2016 found
    that it gives smoother pictures), on the same weights and with the same shapes."""

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(_pooling_tiles(inputs), axis=[2, 4])


POOLING = {"max": TiledMaxPooling2D, "avg": TiledAveragePooling2D}


def _fast_gradient_layer(layer: keras.layers.Layer, pooling: str = "max") -> keras.layers.Layer:
    config = layer.get_config()
    if (type(layer) is keras.layers.Conv2D and config["strides"] == (1, 1)
            and config["padding"] == "same" and config["dilation_rate"] == (1, 1)
            and config["groups"] == 1 and config["data_format"] == "channels_last"
            and all(size % 2 for size in config["kernel_size"])):
        return FrozenConv2D.from_config(config)
    if (type(layer) is keras.layers.MaxPooling2D and config["pool_size"] == (2, 2)
            and config["strides"] == (2, 2) and config["padding"] == "valid"
            and config["data_format"] == "channels_last"):
        return POOLING[pooling].from_config(config)
    return layer.__class__.from_config(config)


def with_fast_gradients(model: keras.Model, pooling: str = "max") -> keras.Model:
    """A frozen copy of `model` computing the same activations, with its convolutions and
    max-pooling replaced by FrozenConv2D and TiledMaxPooling2D where they apply (or, with
    `pooling='avg'`, TiledAveragePooling2D)."""
    copy = keras.models.clone_model(
        model, clone_function=lambda layer: _fast_gradient_layer(layer, pooling))
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if isinstance(layer, FrozenConv2D):
            layer.freeze()
    copy.trainable = False
    return copy


# One model per precision and pooling of the usual weights source: a layer's dtype policy is
# fixed when it is built, so float32 and mixed runs cannot share one.
@functools.lru_cache(maxsize=4)
def _cached_vgg19(source: str, precision: str, pooling: str) -> tuple[tf.keras.Model, str]:
    # Loading weights takes a second or more; notebooks and the API call stylize() repeatedly.
    # Mixed policies keep the variables float32, so every weights file loads unchanged.
    with dtype_policy_scope(precision):
        vgg, description = load_vgg19(source)
        return with_fast_gradients(vgg, pooling), description


class FeatureExtractor:
    """Maps images [batch, H, W, 3] (RGB in [0, 1], H and W >= 32) to {layer: activations}.

    The Keras model ends at the deepest requested layer, so nothing past it is computed;
    `pooling` is 'max' (VGG19's own) or 'avg'. With a mixed `precision` ('mixed_float16',
    'mixed_bfloat16') its layers compute in 16 bits while the inputs, the preprocessing and the
    returned activations stay float32.
    """

    def __init__(self, layers: Sequence[str], weights: str = "auto",
                 preprocess: str = "imagenet", precision: str = "float32",
                 pooling: str = "max") -> None:
        vgg, self.weights_description = _cached_vgg19(weights, precision, pooling)
        known = [layer.name for layer in vgg.layers]
        unknown = [name for name in layers if name not in known]
        if unknown:
            conv = [name for name in known if "_conv" in name]
            raise UserError(f"VGG19 has no layer {', '.join(unknown)}; its layers are "
                            f"{', '.join(conv)}.")
        self.layers = tuple(dict.fromkeys(layers))
        self.preprocess = preprocess
        outputs = [vgg.get_layer(name).output for name in self.layers]
        with dtype_policy_scope(precision):
            self.model = tf.keras.Model(vgg.input, outputs, name="vgg19_features")
        self.model.trainable = False

    def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.convert_to_tensor(images, tf.float32)
        if self.preprocess == "imagenet":
            images = imagenet_preprocess(images)
        # Fed as float32 (the model's input dtype); the first convolution casts to the compute
        # dtype, so ×255 and the mean subtraction happen before any rounding to 16 bits.
        outputs = self.model(images, training=False)
        if len(self.layers) == 1:
            outputs = [outputs]
        return {name: tf.cast(output, tf.float32) for name, output in zip(self.layers, outputs)}


# VGG19's convolutions per block and their widths, to size the activations without a model.
_BLOCKS = {1: (2, 64), 2: (2, 128), 3: (4, 256), 4: (4, 512), 5: (4, 512)}


def layer_position(name: str) -> tuple[int, int]:
    """'block3_conv2' -> (3, 2)."""
    return int(name[5]), int(name.split("conv")[1])


def layer_stride(name: str) -> int:
    """How many input pixels one position of the layer's activations steps over: each block
    after the first starts with a 2×2 pooling."""
    return 2 ** (layer_position(name)[0] - 1)


def layer_shape(name: str, height: int, width: int) -> tuple[int, int, int]:
    """(n_H, n_W, n_C) of the layer's activations for an image of height × width ('valid'
    pooling drops an odd last row or column each time, hence the floor)."""
    stride = layer_stride(name)
    return height // stride, width // stride, _BLOCKS[layer_position(name)[0]][1]


def receptive_field(name: str) -> tuple[int, int]:
    """(left, right): how far before and after its own position·stride the input pixels that
    one activation of the layer depends on reach (3×3 'same' convolutions widen it by one
    position each side, a 2×2 pooling by one position on the right)."""
    block, conv = layer_position(name)
    left = right = 0
    for current in range(1, block + 1):
        stride = 2 ** (current - 1)
        if current > 1:
            right += stride // 2  # the pooling before this block, in the previous stride
        convs = conv if current == block else _BLOCKS[current][0]
        left += convs * stride
        right += convs * stride
    return left, right


def step_memory_bytes(height: int, width: int, layers: Sequence[str], batch: int = 1) -> int:
    """Rough memory one step needs: every activation up to the deepest layer, kept for the
    backward pass, about four times over (forward output, ReLU mask, gradient, and the
    temporaries of XLA's fusions), in float32, plus VGG19's weights and FrozenConv2D's flipped
    copies of them. scripts/benchmark.py and scripts/large.py check this against measured
    peaks."""
    deepest = max(layer_position(name) for name in layers)
    floats = 0
    for block, (convs, channels) in _BLOCKS.items():
        scale = 2 ** (block - 1)
        for conv in range(1, convs + 1):
            if (block, conv) > deepest:
                break
            floats += (height // scale) * (width // scale) * channels
    return 4 * 4 * floats * batch + 2 * 80 * 2 ** 20


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); elsewhere, the physical memory."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
