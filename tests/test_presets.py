"""The presets that translate other tools: each one's cost, computed here in float64 by that
tool's own formula from the same VGG19 activations, is ours. At 512x512, the size where the
translated weights that depend on the size are exact."""
import numpy as np
import pytest

from conftest import make_content, make_stage, make_style
from tfstyle.config import make_config
from tolerances import assert_chain_close, vgg19_path

SIDE = 512
CHANNELS = {"block1_conv1": 64, "block2_conv1": 128, "block3_conv1": 256, "block4_conv1": 512,
            "block5_conv1": 512}


@pytest.fixture(scope="module")
def pictures():
    content, style = make_content(SIDE, SIDE), make_style(SIDE, SIDE)
    noise = np.random.default_rng(0).normal(0, 0.1, content.shape)
    return content, style, np.clip(content + noise, 0, 1).astype(np.float32)


def ours_and_activations(preset, pictures):
    """Our costs of the generated image under `preset`, and float64 activations (content,
    style, generated) of every layer the preset reads."""
    content, style, image = pictures
    config = make_config(preset)
    objective = make_stage(config, content[None], style[None]).optimizer.objective
    costs = {name: float(np.ravel(value)[0]) for name, value in objective.costs(image[None]).items()}
    activations = [objective.extractor(picture[None]) for picture in (content, style, image)]
    layers = {name: [np.float64(features[name].numpy()[0]) for features in activations]
              for name in config.layers}
    return config, costs, layers


def gram(activations):
    flat = activations.reshape(-1, activations.shape[-1])
    return flat.T @ flat


def assert_is(costs, config, content_loss, style_loss, tv_loss=0.0):
    """Each of our weighted terms is the tool's own, and so is the total."""
    path = [*vgg19_path(*config.layers), SIDE * SIDE]
    assert_chain_close(config.alpha * costs["content"], content_loss, path)
    assert_chain_close(config.beta * costs["style"], style_loss, path)
    assert_chain_close(costs["total"], content_loss + style_loss + tv_loss, path)


def test_tf_tutorial_is_the_tutorials_style_content_loss(pictures):
    config, costs, layers = ours_and_activations("tf_tutorial", pictures)
    assert (config.optimizer, config.learning_rate, config.beta_1, config.epsilon) == (
        "adam", 0.02, 0.99, 0.1)
    assert (config.init, config.pooling, config.steps_per_scale) == ("content", "max", (1000,))
    content, _, generated = layers["block5_conv2"]
    # style_content_loss: Gram matrices per position (einsum / H·W), means of squared errors.
    content_loss = 1e4 * np.mean((generated - content) ** 2)
    style_loss = 1e-2 / 5 * sum(
        np.mean((gram(layers[name][2]) / np.prod(layers[name][2].shape[:2])
                 - gram(layers[name][1]) / np.prod(layers[name][1].shape[:2])) ** 2)
        for name in CHANNELS)
    assert "tv" not in costs
    assert_is(costs, config, content_loss, style_loss)


def test_jcjohnson_is_neural_styles_loss(pictures):
    config, costs, layers = ours_and_activations("jcjohnson", pictures)
    assert (config.optimizer, config.init, config.steps_per_scale) == ("lbfgs", "noise", (1000,))
    content, _, generated = layers["block4_conv2"]
    # ContentLoss: MSE of the features; StyleLoss: MSE of the Grams divided by C·H·W each.
    content_loss = 5 * np.mean((generated - content) ** 2)
    style_loss = 100 * sum(np.mean((gram(layers[name][2]) - gram(layers[name][1])) ** 2)
                           / layers[name][2].size ** 2 for name in CHANNELS)
    # TVLoss's gradient is that of strength·½·Σ(Δx² + Δy²) on its image, our pixels times 256
    # (its sum stops one row and column short of ours, which counts the last differences too).
    pixels = 256 * np.float64(pictures[2])
    tv_loss = 1e-3 / 2 * (np.sum((pixels[1:] - pixels[:-1]) ** 2)
                          + np.sum((pixels[:, 1:] - pixels[:, :-1]) ** 2))
    assert_chain_close(config.tv_weight * costs["tv"], tv_loss, [SIDE * SIDE * 3])
    assert_is(costs, config, content_loss, style_loss, tv_loss)


def test_gatys2016_is_the_papers_loss(pictures):
    config, costs, layers = ours_and_activations("gatys2016", pictures)
    assert (config.pooling, config.init, config.optimizer) == ("avg", "noise", "lbfgs")
    content, _, generated = layers["block4_conv2"]
    alpha, beta = 1e-3, 1.0  # α/β = 10⁻³; w_l = 1/5 on conv1_1 .. conv5_1
    content_loss = alpha * 0.5 * np.sum((generated - content) ** 2)
    style_loss = beta * sum(
        0.2 * np.sum((gram(layers[name][2]) - gram(layers[name][1])) ** 2)
        / (4 * CHANNELS[name] ** 2 * np.prod(layers[name][2].shape[:2]) ** 2) for name in CHANNELS)
    assert_is(costs, config, content_loss, style_loss)


@pytest.mark.parametrize("preset", ["gatys2016", "jcjohnson", "tf_tutorial"])
def test_any_flag_overrides_a_translated_preset(preset):
    config = make_config(preset, max_size=256, steps=10, pooling="avg")
    assert (config.max_size, config.steps, config.pooling, config.preset) == (256, 10, "avg", preset)
