import numpy as np
import pytest
import tensorflow as tf

from tfstyle.errors import UserError
from tfstyle.features import (FeatureExtractor, FrozenConv2D, TiledMaxPooling2D,
                              imagenet_preprocess)
from tfstyle.weights import load_vgg19


def test_requested_layers_and_shapes():
    extractor = FeatureExtractor(["block1_conv1", "block3_conv2", "block5_conv4"])
    features = extractor(tf.random.uniform([2, 64, 96, 3], seed=1))
    assert list(features) == ["block1_conv1", "block3_conv2", "block5_conv4"]
    assert features["block1_conv1"].shape == (2, 64, 96, 64)
    assert features["block3_conv2"].shape == (2, 16, 24, 256)
    assert features["block5_conv4"].shape == (2, 4, 6, 512)
    assert all(value.dtype == tf.float32 for value in features.values())


def test_nothing_past_the_deepest_layer_is_built():
    extractor = FeatureExtractor(["block2_conv1", "block1_conv1"])
    names = [layer.name for layer in extractor.model.layers]
    assert names[1:] == ["block1_conv1", "block1_conv2", "block1_pool", "block2_conv1"]


def test_any_size_from_32_pixels():
    extractor = FeatureExtractor(["block5_conv1"])
    assert extractor(tf.zeros([1, 32, 45, 3]))["block5_conv1"].shape == (1, 2, 2, 512)


def test_imagenet_preprocessing_values():
    pixel = tf.constant([[[[1.0, 0.5, 0.0]]]])
    np.testing.assert_allclose(imagenet_preprocess(pixel).numpy().ravel(),
                               [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], rtol=1e-6)


def test_preprocessing_happens_inside_and_none_feeds_raw_input():
    images = tf.random.uniform([1, 48, 48, 3], seed=2)
    with_imagenet = FeatureExtractor(["block2_conv2"], preprocess="imagenet")
    raw = FeatureExtractor(["block2_conv2"], preprocess="none")
    np.testing.assert_allclose(with_imagenet(images)["block2_conv2"],
                               raw(imagenet_preprocess(images))["block2_conv2"], rtol=1e-4, atol=1e-3)
    direct = raw.model(images)  # what the Coursera notebook does: [0, 1] straight into VGG19
    np.testing.assert_allclose(raw(images)["block2_conv2"], direct, rtol=1e-5)
    assert not np.allclose(raw(images)["block2_conv2"], with_imagenet(images)["block2_conv2"])


def test_weights_are_real_and_shared_between_extractors():
    first = FeatureExtractor(["block1_conv1"])
    second = FeatureExtractor(["block4_conv1"])
    kernel = first.model.get_layer("block1_conv1").kernel.numpy()
    assert kernel.shape == (3, 3, 3, 64) and np.abs(kernel).mean() > 0.05
    assert first.model.get_layer("block1_conv1") is second.model.get_layer("block1_conv1")
    assert "VGG19 weights" in first.weights_description


def test_unknown_layer_is_a_user_error():
    with pytest.raises(UserError, match="no layer block9_conv1"):
        FeatureExtractor(["block9_conv1"])


@pytest.mark.parametrize("jit", [True, False])
def test_fast_gradient_layers_give_keras_vgg19s_values_and_gradient(jit):
    layers = ["block1_conv1", "block2_conv2", "block4_conv1", "block5_conv2"]
    extractor = FeatureExtractor(layers, preprocess="none")
    kinds = {type(layer) for layer in extractor.model.layers[1:]}
    assert kinds == {FrozenConv2D, TiledMaxPooling2D}
    stock, _ = load_vgg19()  # Keras' own layers: Conv2D and MaxPooling2D
    keras_model = tf.keras.Model(stock.input, [stock.get_layer(name).output for name in layers])
    images = tf.random.uniform([2, 37, 50, 3], 0, 255, seed=4)  # odd sizes: pooling drops edges

    def values_and_gradient(model):
        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = model(images)
            total = tf.add_n([tf.reduce_sum(output ** 2) for output in outputs])
        return outputs, tape.gradient(total, images)

    ours, our_gradient = tf.function(lambda: values_and_gradient(extractor.model),
                                     jit_compile=jit)()
    # The reference runs without XLA: under TF op determinism (process-wide, turned on by any
    # earlier checkpointed run) XLA refuses Keras' MaxPoolGrad.
    theirs, their_gradient = tf.function(lambda: values_and_gradient(keras_model))()
    for mine, reference in zip(ours, theirs):
        if jit:  # XLA's convolutions round differently from TF's
            np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-3)
        else:
            np.testing.assert_array_equal(mine, reference)
    scale = np.abs(their_gradient).max()
    assert scale > 0
    np.testing.assert_allclose(our_gradient / scale, their_gradient / scale, rtol=0, atol=1e-6)


def test_tiled_max_pooling_values_and_tied_maxima_sharing_the_gradient():
    pool = TiledMaxPooling2D(pool_size=2, strides=2)
    x = tf.constant([[1.0, 1.0, 5.0], [0.0, 0.0, 6.0], [9.0, 9.0, 9.0]])[None, :, :, None]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = pool(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[1.0]])  # 3×3 -> 1×1: last row/column dropped
    np.testing.assert_array_equal(tape.gradient(y, x)[0, :, :, 0],
                                  [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
