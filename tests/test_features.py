import numpy as np
import pytest
import tensorflow as tf

from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor, imagenet_preprocess


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
