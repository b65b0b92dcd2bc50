"""The VGG19 feature extractor: activations of exactly the layers the costs use."""
from __future__ import annotations

import functools
from typing import Sequence

import tensorflow as tf

from tfstyle.errors import UserError
from tfstyle.weights import load_vgg19

# Caffe-style ImageNet statistics that Keras' VGG19 weights were trained with (BGR order).
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def imagenet_preprocess(images: tf.Tensor) -> tf.Tensor:
    """RGB in [0, 1] -> what VGG19 saw in training: x·255, RGB→BGR, minus the channel means."""
    return images[..., ::-1] * 255.0 - tf.constant(IMAGENET_BGR_MEAN, images.dtype)


@functools.lru_cache(maxsize=2)
def _cached_vgg19(source: str) -> tuple[tf.keras.Model, str]:
    # Loading weights takes a second or more; notebooks and the API call stylize() repeatedly.
    return load_vgg19(source)


class FeatureExtractor:
    """Maps images [batch, H, W, 3] (RGB in [0, 1], H and W >= 32) to {layer: activations}.

    The Keras model ends at the deepest requested layer, so nothing past it is computed.
    """

    def __init__(self, layers: Sequence[str], weights: str = "auto",
                 preprocess: str = "imagenet") -> None:
        vgg, self.weights_description = _cached_vgg19(weights)
        known = [layer.name for layer in vgg.layers]
        unknown = [name for name in layers if name not in known]
        if unknown:
            conv = [name for name in known if "_conv" in name]
            raise UserError(f"VGG19 has no layer {', '.join(unknown)}; its layers are "
                            f"{', '.join(conv)}.")
        self.layers = tuple(dict.fromkeys(layers))
        self.preprocess = preprocess
        outputs = [vgg.get_layer(name).output for name in self.layers]
        self.model = tf.keras.Model(vgg.input, outputs, name="vgg19_features")
        self.model.trainable = False

    def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.convert_to_tensor(images, tf.float32)
        if self.preprocess == "imagenet":
            images = imagenet_preprocess(images)
        outputs = self.model(images, training=False)
        if len(self.layers) == 1:
            outputs = [outputs]
        return {name: tf.cast(output, tf.float32) for name, output in zip(self.layers, outputs)}
