"""The feed-forward networks: instance norm's formula, shapes, saving, and a few training
steps that lower the optimisation path's own costs."""
import numpy as np
import pytest
import keras

from conftest import make_content, make_style, save_png
from tfstyle import networks, training
from tfstyle.config import make_config
from tfstyle.features import FeatureExtractor
from tfstyle.style import Style


def test_instance_norm_is_each_images_channels_standardised_then_scaled_and_shifted():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (2, 5, 7, 4)).astype(np.float32)
    layer = networks.InstanceNormalization()
    layer.build(x.shape)
    layer.gamma.assign([[1.0, 2.0, 0.5, -1.0]])
    layer.beta.assign([[0.0, 1.0, -2.0, 0.25]])
    mean = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)
    variance = x.astype(np.float64).var(axis=(1, 2), keepdims=True)
    expected = ((x - mean) / np.sqrt(variance + networks.EPSILON) * [1.0, 2.0, 0.5, -1.0]
                + [0.0, 1.0, -2.0, 0.25])
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_conditional_instance_norm_mixes_the_styles_parameters():
    x = np.random.default_rng(1).normal(size=(3, 4, 4, 2)).astype(np.float32)
    layer = networks.InstanceNormalization(styles=2)
    layer.build([x.shape, (3, 2)])
    layer.gamma.assign([[1.0, 1.0], [3.0, -1.0]])
    layer.beta.assign([[0.0, 0.0], [1.0, 2.0]])
    plain = networks.InstanceNormalization()(x).numpy()  # γ = 1, β = 0
    mixes = np.array([[1, 0], [0, 1], [0.5, 0.5]], np.float32)
    out = layer([x, mixes]).numpy()
    np.testing.assert_allclose(out[0], plain[0], atol=1e-6)
    np.testing.assert_allclose(out[1], plain[1] * [3.0, -1.0] + [1.0, 2.0], atol=1e-5)
    np.testing.assert_allclose(out[2], plain[2] * [2.0, 0.0] + [0.5, 1.0], atol=1e-5)


def test_reflection_padding_mirrors_the_borders():
    x = np.arange(2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)
    padded = networks.ReflectionPadding2D(2)(x).numpy()
    np.testing.assert_array_equal(padded, np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], "reflect"))


def test_the_network_keeps_any_size_and_saves_and_loads_in_keras_format(tmp_path):
    network = networks.johnson_network(width=4, residual_blocks=1)
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in network.layers)
    photo = make_content(37, 22)[None]  # neither side a multiple of 4
    out = networks.apply_network(network, photo).numpy()
    assert out.shape == photo.shape and out.min() >= 0.0 and out.max() <= 1.0
    path = tmp_path / "model.keras"
    network.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(networks.apply_network(loaded, photo).numpy(), out)
    mixed = networks.johnson_network(width=4, residual_blocks=1, styles=3)
    assert networks.apply_network(mixed, photo, [0.2, 0.3, 0.5]).shape == photo.shape


def test_the_texture_network_paints_any_size_and_loads_in_safe_mode(tmp_path):
    network = networks.texture_network(width=4, levels=3)
    assert networks.texture_levels(network) == 3 and networks.side_multiple(network) == 4
    noise = networks.texture_noise(2, 37, 22, 3, seed=5)
    assert noise.shape == (2, 37, 22, 9) and 0 <= noise.min() and noise.max() < 1
    np.testing.assert_array_equal(noise, networks.texture_noise(2, 37, 22, 3, seed=5))
    out = networks.apply_network(network, noise).numpy()
    assert out.shape == (2, 37, 22, 3)
    network.save(tmp_path / "texture.keras")
    loaded = keras.saving.load_model(tmp_path / "texture.keras", safe_mode=True)
    np.testing.assert_array_equal(networks.apply_network(loaded, noise).numpy(), out)
    assert networks.texture_levels(networks.johnson_network(4, 1)) == 0


def test_photo_batches_are_random_crops_repeatable_and_resumable(tmp_path):
    paths = [save_png(make_content(60 + 10 * number, 48), tmp_path / f"p{number}.png")
             for number in range(3)]
    first = [batch for _, batch in zip(range(4), training.photo_batches(paths, 32, 2, seed=7))]
    again = [batch for _, batch in zip(range(4), training.photo_batches(paths, 32, 2, seed=7))]
    later = [batch for _, batch in zip(range(2), training.photo_batches(paths, 32, 2, seed=7,
                                                                          start=2))]
    assert first[0].shape == (2, 32, 32, 3) and first[0].dtype == np.float32
    for ours, theirs in zip(first, again):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(first[2:], later):
        np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(first[0], first[1])
    other = next(training.photo_batches(paths, 32, 2, seed=8))
    assert not np.array_equal(first[0], other)


@pytest.mark.parametrize("seed", [0])
def test_a_few_training_steps_lower_the_objective_on_the_photos(tmp_path, seed):
    keras.utils.set_random_seed(seed)
    config = make_config(style_layers="block1_conv1=0.5,block2_conv1=0.5",
                         content_layers="block2_conv2=1", tv_weight=0.0)
    extractor = FeatureExtractor(config.layers)
    network = networks.johnson_network(width=4, residual_blocks=1)
    styles = [Style(make_style(32, 32)[None])]
    paths = [save_png(make_content(48, 40), tmp_path / "photo.png")]
    batches = training.photo_batches(paths, 32, 2, seed=seed)
    trainer = training.Trainer(config, network, extractor, styles, 32, 2, learning_rate=0.01)
    check = next(batches)
    before = training.costs_of(config, network, extractor, styles, check)
    for _, batch in zip(range(30), batches):
        costs = trainer.step(batch)
    after = training.costs_of(config, network, extractor, styles, check)
    assert set(costs) == set(before) and after["total"] < 0.7 * before["total"], (before, after)
