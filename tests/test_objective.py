"""tfstyle.objective: the costs as named, weighted terms, and normalised costs."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_stage, make_style
from tfstyle import api
from tfstyle.config import make_config
from tfstyle.costs import gram_matrix, total_variation_cost
from tfstyle.features import layer_shape
from tfstyle.objective import first_bad_cost
from tolerances import assert_chain_close, assert_within_rounding, vgg19_path

LAYERS = "block1_conv1=0.5,block2_conv1=0.3,block3_conv1=0.2"


@pytest.fixture
def batch(content_array, style_array):
    return content_array[None, :48, :64], style_array[None, :48, :48]


def objective_for(batch, **settings):
    settings = {"tv_weight": 0.0, "content_layers": "block3_conv2", **settings}
    config = make_config(style_layers=LAYERS, scales=1, **settings)
    return make_stage(config, *batch).optimizer.objective


def test_normalised_costs_are_relative_errors(batch):
    """J_content(C, G) / J_content(C, 0) = Σ(a_C − a_G)²/Σa_C², and per style layer
    λ·Σ(G_S − G_G)²/ΣG_S², computed here in float64 from the same activations."""
    objective = objective_for(batch, normalize_costs=True, alpha=2.0, beta=3.0)
    image = np.clip(batch[0] + 0.1 * np.sin(np.arange(batch[0].size)).reshape(batch[0].shape),
                    0, 1).astype(np.float32)
    costs = {name: float(value) for name, value in objective.costs(image).items()}
    extractor = objective.extractor
    ours, content, style = extractor(image), extractor(batch[0]), extractor(batch[1])
    a_g = ours["block3_conv2"].numpy().astype(np.float64)
    a_c = content["block3_conv2"].numpy().astype(np.float64)
    path = vgg19_path("block3_conv2")
    assert_chain_close(costs["content"], ((a_c - a_g) ** 2).sum() / (a_c ** 2).sum(),
                       [*path, a_g.size])
    expected_style = 0.0
    for name, weight in objective.config.style_layers:
        g_s = gram_matrix(style[name]).numpy().astype(np.float64)
        g_g = gram_matrix(ours[name]).numpy().astype(np.float64)
        relative = weight * ((g_s - g_g) ** 2).sum() / (g_s ** 2).sum()
        expected_style += relative
        # A relative error: the Grams carry their rounding, hence the scale of G_S² and G_G².
        assert_within_rounding(costs[f"style/{name}"], relative,
                               terms=g_g.shape[1] ** 2 + ours[name].shape[1] * ours[name].shape[2],
                               computations=2,
                               magnitude=weight * ((np.abs(g_s) + np.abs(g_g)) ** 2).sum()
                               / (g_s ** 2).sum())
    assert_within_rounding(costs["style"], expected_style, terms=3,
                           magnitude=sum(costs[f"style/{name}"] for name in
                                         objective.config.layer_names))
    assert_within_rounding(costs["total"], 2.0 * costs["content"] + 3.0 * costs["style"],
                           terms=3)
    # At the content image the content cost is 0; a blank image costs about 1 (not exactly:
    # VGG19's biases keep some activations on).
    assert float(objective.costs(batch[0])["content"]) == 0.0
    assert 0.5 < float(objective.costs(np.zeros_like(batch[0]))["content"]) < 1.5


def test_normalising_divides_each_cost_by_its_value_for_no_activations(batch):
    plain = objective_for(batch, normalize_costs=False)
    relative = objective_for(batch, normalize_costs=True)
    image = batch[0][:, ::-1].copy()
    plain_costs, relative_costs = plain.costs(image), relative.costs(image)
    target, = plain.content_targets
    content_scale = float(tf.reduce_sum(target ** 2)) / (4 * target.numpy().size)
    assert_chain_close(float(relative_costs["content"]),
                       float(plain_costs["content"]) / content_scale,
                       [*vgg19_path("block3_conv2"), image.size])


def test_terms_are_named_for_monitoring_and_tv_joins_the_total(batch):
    without = objective_for(batch, tv_weight=0.0).costs(batch[0])
    assert list(without) == ["total", "content", "style", "style/block1_conv1",
                             "style/block2_conv1", "style/block3_conv1"]
    objective = objective_for(batch, tv_weight=5.0)
    image = batch[0][:, :, ::-1].copy()
    costs = {name: float(value) for name, value in objective.costs(image).items()}
    assert list(costs)[-1] == "tv"
    np.testing.assert_array_equal(costs["tv"], float(total_variation_cost(image)[0]))
    assert_within_rounding(costs["total"], objective.config.alpha * costs["content"]
                           + objective.config.beta * costs["style"] + 5.0 * costs["tv"], terms=5)


def test_the_most_specific_bad_cost_is_named():
    nan, inf = float("nan"), float("inf")
    assert first_bad_cost({"total": nan, "content": 1.0, "style": nan,
                           "style/block1_conv1": inf}) == "style/block1_conv1"
    assert first_bad_cost({"total": nan, "content": 1.0, "style": nan}) == "style"
    assert first_bad_cost({"total": nan, "content": 1.0}) == "total"
    assert first_bad_cost({"total": 1.0}) is None


def test_style_scale_resizes_the_style_and_takes_its_grams_per_position(content_array,
                                                                        style_array):
    config = make_config(style_layers=LAYERS, content_layer="block3_conv2", scales=1,
                         style_scale=2.0)
    inputs = api.load_inputs(config, [content_array], [make_style(120, 90)])
    _, (plain,) = api.arrays_at(config.replace(style_scale=1.0), inputs, (64, 51))
    contents, (scaled,) = api.arrays_at(config, inputs, (64, 51))
    plain_style, styles = plain.image, scaled.image
    assert plain_style.shape == (1, 49, 66, 3) and styles.shape == (1, 99, 132, 3)
    objective = make_stage(config, contents, styles).optimizer.objective
    features = objective.extractor(styles)
    for (name, _), target in zip(config.style_layers, objective.styles[0].grams):
        generated = np.prod(layer_shape(name, 51, 64)[:2])
        positions = features[name].shape[1] * features[name].shape[2]
        assert positions > 3.5 * generated
        # Per position of the style, times the generated image's positions: the same bits.
        np.testing.assert_array_equal(
            target, gram_matrix(features[name]) * float(generated / positions))
    # At scale 1 the style's Grams are the course's, untouched.
    plain = make_stage(config.replace(style_scale=1.0), contents, plain_style).optimizer.objective
    features = plain.extractor(plain_style)
    for (name, _), target in zip(config.style_layers, plain.styles[0].grams):
        np.testing.assert_array_equal(target, gram_matrix(features[name]))


def test_several_content_layers_are_a_weighted_sum_reported_layer_by_layer(batch):
    image = np.clip(batch[0] + 0.1, 0, 1).astype(np.float32)
    single = {name: objective_for(batch, content_layers=f"{name}=1").costs(image)
              for name in ("block2_conv2", "block4_conv2")}
    both = objective_for(batch, content_layers="block2_conv2=0.25,block4_conv2=0.75").costs(image)
    assert [name for name in both if name.startswith("content")] == [
        "content", "content/block2_conv2", "content/block4_conv2"]
    for name, weight in (("block2_conv2", 0.25), ("block4_conv2", 0.75)):
        assert_within_rounding(both[f"content/{name}"], weight * single[name]["content"], terms=2,
                               computations=2)
    assert_within_rounding(both["content"], both["content/block2_conv2"]
                           + both["content/block4_conv2"], terms=1)
    # The older single-layer form is the same setting.
    assert make_config(content_layer="block2_conv2") == make_config(content_layers="block2_conv2=1")


def test_the_style_layer_weight_exponent_grows_each_layers_weight_by_its_position(batch):
    config = make_config(style_layers="block1_conv1=1,block2_conv1=1,block3_conv1=2",
                         style_layer_weight_exp=2.0)
    # 1·1, 1·2, 2·4, rescaled from 11 to the weights' sum, 4.
    np.testing.assert_allclose(config.style_layer_weights, np.array([1, 2, 8]) * 4 / 11)
    assert make_config(style_layers=LAYERS).style_layer_weights == (0.5, 0.3, 0.2)
    image = np.clip(batch[0] + 0.1, 0, 1).astype(np.float32)
    plain = objective_for(batch).costs(image)
    grown = objective_for(batch, style_layer_weight_exp=3.0).costs(image)
    # λ ∝ 0.5·1, 0.3·3, 0.2·9 = 0.5, 0.9, 1.8, rescaled to sum 1.
    for name, factor in zip(["block1_conv1", "block2_conv1", "block3_conv1"], [1, 3, 9]):
        assert_within_rounding(grown[f"style/{name}"],
                               plain[f"style/{name}"] * factor / 3.2, terms=3,
                               computations=2)
