"""Tiles (tfstyle.tiles): an image too large for one pass, computed exactly in pieces."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_content, make_stage, make_style, run_steps
from tfstyle import api
from tfstyle.config import make_config
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor
from tfstyle.objective import Objective
from tfstyle.style import Style
from tfstyle.tiles import ALIGN, TiledObjective, halo, spans
from tolerances import assert_chain_close, vgg19_path, vgg19_step_path


def test_the_margin_covers_the_deepest_layers_receptive_field():
    assert halo(["block2_conv2"]) == 16  # reaches 6 pixels left, 7 right
    assert halo(["block4_conv2", "block5_conv1"]) == 80  # 70 both ways
    assert halo(["block5_conv4"]) == 128  # 118 left, 117 right


@pytest.mark.parametrize("length, core, margin", [(1000, 256, 80), (2160, 512, 80),
                                                   (300, 64, 128), (100, 64, 16), (50, 64, 16)])
def test_tiles_cover_the_axis_with_their_context(length, core, margin):
    found = spans(length, core, margin)
    assert [span.start for span in found] == list(range(0, length, core))
    assert [span.end for span in found] == [min(start + core, length)
                                            for start in range(0, length, core)]
    for span in found:
        assert span.region_start % ALIGN == 0 and 0 <= span.region_start <= span.start
        assert span.end <= span.region_end <= length
        assert span.start - span.region_start >= margin or span.region_start == 0
        assert span.region_end - span.end >= margin or span.region_end == length
    # Few region lengths: each is compiled once.
    assert len({span.region_end - span.region_start for span in found}) <= 2


@pytest.fixture(scope="module")
def pictures():
    return make_content(320, 256)[None], make_style(320, 256)[None]


@pytest.mark.parametrize("content_layers", ["block4_conv2", "block2_conv2=0.5,block4_conv2=1"])
def test_tiled_costs_and_gradient_are_the_whole_images(pictures, content_layers):
    content, style = pictures
    config = make_config(scales=1, tv_weight=1.0, content_layers=content_layers)
    extractor = FeatureExtractor(config.layers)
    whole = Objective.of_images(config, extractor, content, [Style(style)], (320, 256))
    tiled = TiledObjective(config, extractor, content, [Style(style)], (320, 256), 64)
    assert len(tiled.tiles(256, 320)) == 20
    path = vgg19_path(*config.layers)
    for ours, theirs in zip(tiled.objective.content_targets, whole.content_targets, strict=True):
        assert_chain_close(ours, theirs, path)
    for ours, theirs in zip(tiled.objective.styles[0].grams, whole.styles[0].grams):
        assert_chain_close(ours, theirs, [*path, 320 * 256])
    image = tf.constant(np.clip(content + np.random.default_rng(1).normal(0, 0.1, content.shape),
                                0, 1).astype(np.float32))
    expected, expected_gradient = tf.function(whole.value_and_gradient, jit_compile=True)(image)
    costs, gradient = tiled.value_and_gradient(image)
    assert list(costs) == list(expected)
    step = vgg19_step_path(*config.layers, pixels=320 * 256)
    for name, value in costs.items():
        assert_chain_close(float(value), float(expected[name]), step)
    assert_chain_close(gradient, expected_gradient, step)
    assert float(tiled.costs(image)["total"]) == float(costs["total"])


def test_a_run_in_tiles_ends_where_one_in_a_piece_does(pictures):
    content, style = pictures
    config = make_config(scales=1, steps=3)
    results = [run_steps(make_stage(config.replace(tile_size=tile), content, style), 3)
               for tile in (0, 128)]
    step = vgg19_step_path(*config.layers, pixels=320 * 256)
    assert_chain_close(results[1].image, results[0].image, step * 3)


def test_tiles_are_chosen_only_when_a_whole_step_does_not_fit(monkeypatch):
    config = make_config()
    assert api.tile_for(config, (512, 384), 1) == 0
    assert api.tile_for(config.replace(tile_size=256), (512, 384), 1) == 256
    assert api.tile_for(config.replace(tile_size=512), (512, 384), 1) == 0
    monkeypatch.setattr(api.features, "available_memory_bytes", lambda: 24 * 2 ** 30)
    tile = api.tile_for(config, (3840, 2160), 1)
    assert 64 <= tile < 3840 and tile % 16 == 0
    assert api.memory_needed(config, (3840, 2160), 1) > 24 * 2 ** 30
    assert api.memory_needed(config, (3840, 2160), 1, tile) <= 24 * 2 ** 30
    with pytest.raises(UserError, match="even in tiles.*the largest that fits is --max_size="):
        api.tile_for(config, (40000, 30000), 1)


@pytest.mark.parametrize("with_content", [True, False])
def test_tiles_with_regions_of_two_styles_and_without_content_are_exact(with_content):
    content = make_content(192, 128)[None] if with_content else None
    left = np.zeros((128, 192), np.float32)
    left[:, :80] = 1.0
    left[:, 80:112] = 0.5  # a soft edge
    styles = [Style(make_style(160, 96)[None], 0.6, left),
              Style(make_style(96, 96)[None, :, ::-1], 0.4, 1.0 - left)]
    config = make_config(scales=1, tv_weight=1.0)
    extractor = FeatureExtractor(config.layers)
    whole = Objective.of_images(config, extractor, content, styles, (192, 128))
    tiled = TiledObjective(config, extractor, content, styles, (192, 128), 64)
    image = tf.constant(np.random.default_rng(2).uniform(0, 1, (1, 128, 192, 3)).astype(np.float32))
    expected, expected_gradient = tf.function(whole.value_and_gradient, jit_compile=True)(image)
    costs, gradient = tiled.value_and_gradient(image)
    assert list(costs) == list(expected) and ("content" in costs) == with_content
    step = vgg19_step_path(*config.layers, pixels=192 * 128)
    for name, value in costs.items():
        assert_chain_close(float(value), float(expected[name]), step)
    assert_chain_close(gradient, expected_gradient, step)
