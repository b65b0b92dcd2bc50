import numpy as np
import pytest
import tensorflow as tf

from tfstyle.errors import UserError
from tfstyle.features import (FeatureExtractor, FrozenConv2D, TiledMaxPooling2D,
                              imagenet_preprocess)
from tfstyle.weights import load_vgg19
from tolerances import assert_chain_close, assert_within_rounding, vgg19_path, vgg19_step_path


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
    # Three roundings: the float32 mean, ×255 and the subtraction, of values up to 255 + mean.
    assert_within_rounding(imagenet_preprocess(pixel).numpy().ravel(),
                           [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], terms=3,
                           magnitude=np.array([255.0, 127.5, 0.0]) + [103.939, 116.779, 123.68])


def test_preprocessing_happens_inside_and_none_feeds_raw_input():
    images = tf.random.uniform([1, 48, 48, 3], seed=2)
    with_imagenet = FeatureExtractor(["block2_conv2"], preprocess="imagenet")
    raw = FeatureExtractor(["block2_conv2"], preprocess="none")
    # The same operations on the same inputs: the same bits.
    np.testing.assert_array_equal(with_imagenet(images)["block2_conv2"],
                                  raw(imagenet_preprocess(images))["block2_conv2"])
    direct = raw.model(images)  # what the Coursera notebook does: [0, 1] straight into VGG19
    np.testing.assert_array_equal(raw(images)["block2_conv2"], direct)
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


LAYERS = ["block1_conv1", "block2_conv2", "block4_conv1", "block5_conv2"]


@pytest.fixture(scope="module")
def fast_and_stock():
    """Our extractor's model and Keras' own VGG19 (Conv2D, MaxPooling2D) with its activations
    at every layer for test images of odd sizes (pooling drops the edges)."""
    extractor = FeatureExtractor(LAYERS, preprocess="none")
    stock, _ = load_vgg19()
    images = tf.random.stateless_uniform([2, 37, 50, 3], (4, 0), 0, 255)
    every_layer = tf.keras.Model(stock.input, [layer.output for layer in stock.layers[1:]])
    activations = dict(zip([layer.name for layer in stock.layers[1:]], every_layer(images)))
    activations[stock.layers[0].name] = images
    return extractor, stock, activations


def values_and_gradient(model, images):
    with tf.GradientTape() as tape:
        tape.watch(images)
        outputs = model(images)
        total = tf.add_n([tf.reduce_sum(output ** 2) for output in outputs])
    return outputs, tape.gradient(total, images)


def test_fast_gradient_layers_give_keras_vgg19s_values_and_gradient(fast_and_stock):
    extractor, stock, activations = fast_and_stock
    kinds = {type(layer) for layer in extractor.model.layers[1:]}
    assert kinds == {FrozenConv2D, TiledMaxPooling2D}
    keras_model = tf.keras.Model(stock.input, [stock.get_layer(name).output for name in LAYERS])
    images = activations[stock.layers[0].name]
    ours, our_gradient = tf.function(lambda: values_and_gradient(extractor.model, images))()
    theirs, their_gradient = tf.function(lambda: values_and_gradient(keras_model, images))()
    for mine, reference in zip(ours, theirs):  # the same TF convolutions: the same bits
        np.testing.assert_array_equal(mine, reference)
    assert np.abs(their_gradient).max() > 0
    # Ours is a forward convolution with the flipped kernel, Keras' is Conv2DBackpropInput:
    # other kernels, so the backward pass adds in another order.
    assert_chain_close(our_gradient, their_gradient, vgg19_step_path(*LAYERS, pixels=37 * 50))


def test_fast_gradient_layers_under_xla(fast_and_stock):
    """XLA's kernels add in another order than TF's, which is within rounding layer by layer.
    Through the whole model the values stay within the chain's rounding; its gradient is not
    compared there: where a max-pool tile holds two values within rounding of each other, XLA
    and TF may pick different ones and route that part of the gradient elsewhere, as any two
    correct implementations may."""
    extractor, stock, activations = fast_and_stock
    # The reference runs without XLA: under TF op determinism (process-wide, turned on by any
    # earlier checkpointed run) XLA refuses Keras' MaxPoolGrad.
    ours = tf.function(lambda: extractor.model(activations[stock.layers[0].name]),
                       jit_compile=True)()
    for name, mine in zip(LAYERS, ours):
        assert_chain_close(mine, activations[name], vgg19_path(name))

    names = [layer.name for layer in stock.layers]
    for layer in extractor.model.layers[1:]:
        inputs = activations[names[names.index(layer.name) - 1]]
        if isinstance(layer, FrozenConv2D):
            check_convolution(layer, inputs)
        else:
            check_pooling(layer, inputs.shape)


def check_convolution(layer, inputs):
    """FrozenConv2D's convolution and input gradient (XLA) against tf.nn.conv2d's (TF): each is
    one dot product per value, 3·3·C_in terms forward and 3·3·C_out backward, so within
    2·γ_n·Σ|terms| (tests/tolerances.py), Σ|terms| being the same convolution of |x| and |k|."""
    kernel = layer.kernel
    upstream = tf.random.stateless_normal([*inputs.shape[:3], kernel.shape[-1]], (5, 0))

    def convolution_and_gradient(convolve, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = convolve(x)
        return y, tape.gradient(y, x, output_gradients=upstream)

    ours, our_gradient = tf.function(
        lambda x: convolution_and_gradient(lambda v: layer.convolution_op(v, kernel), x),
        jit_compile=True)(inputs)
    theirs, their_gradient = tf.function(
        lambda x: convolution_and_gradient(lambda v: tf.nn.conv2d(v, kernel, 1, "SAME"), x))(inputs)
    height, width, c_in, c_out = kernel.shape
    magnitude = tf.nn.conv2d(tf.abs(inputs), tf.abs(kernel), 1, "SAME")
    assert_within_rounding(ours, theirs, terms=height * width * c_in, magnitude=magnitude,
                           computations=2)
    gradient_magnitude = tf.nn.conv2d_transpose(tf.abs(upstream), tf.abs(kernel), inputs.shape, 1,
                                                "SAME")
    assert_within_rounding(our_gradient, their_gradient, terms=height * width * c_out,
                           magnitude=gradient_magnitude, computations=2)


def check_pooling(layer, shape):
    """TiledMaxPooling2D (XLA) against MaxPooling2D (TF) at this layer's input shape, on values
    with no ties: a max is exact, and its gradient goes to the one largest value of each tile,
    in both."""
    x = tf.random.stateless_uniform(shape, (6, 0))
    upstream = tf.random.stateless_normal([shape[0], shape[1] // 2, shape[2] // 2, shape[3]],
                                          (7, 0))
    stock = tf.keras.layers.MaxPooling2D(2, 2)

    def pooled_and_gradient(pool):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = pool(x)
        return y, tape.gradient(y, x, output_gradients=upstream)

    ours = tf.function(lambda: pooled_and_gradient(layer), jit_compile=True)()
    theirs = tf.function(lambda: pooled_and_gradient(stock))()
    for mine, reference in zip(ours, theirs):
        np.testing.assert_array_equal(mine, reference)


def test_tiled_max_pooling_values_and_tied_maxima_sharing_the_gradient():
    pool = TiledMaxPooling2D(pool_size=2, strides=2)
    x = tf.constant([[1.0, 1.0, 5.0], [0.0, 0.0, 6.0], [9.0, 9.0, 9.0]])[None, :, :, None]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = pool(x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[1.0]])  # 3×3 -> 1×1: last row/column dropped
    np.testing.assert_array_equal(tape.gradient(y, x)[0, :, :, 0],
                                  [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_average_pooling_takes_each_tiles_mean_on_the_same_weights():
    images = tf.random.uniform([1, 37, 50, 3], seed=4)
    layers = ["block1_conv2", "block2_conv1"]
    plain, smooth = FeatureExtractor(layers), FeatureExtractor(layers, pooling="avg")
    theirs, ours = plain(images), smooth(images)
    # Before the first pooling: the same layers on the same inputs, the same bits.
    np.testing.assert_array_equal(ours["block1_conv2"], theirs["block1_conv2"])
    assert not np.allclose(ours["block2_conv1"], theirs["block2_conv1"], atol=1e-3)
    conv = plain.model.get_layer("block2_conv1")
    pooled = tf.nn.avg_pool2d(theirs["block1_conv2"], 2, 2, "VALID")
    magnitude = tf.nn.relu(tf.nn.conv2d(tf.abs(pooled), tf.abs(conv.kernel), 1, "SAME")
                           + tf.abs(conv.bias))
    # The rounding of a 4-term mean and of the convolution's 576-term sums, on both sides.
    assert_within_rounding(ours["block2_conv1"], conv(pooled), terms=4 + 576,
                           magnitude=magnitude, computations=2)
