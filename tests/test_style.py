"""Several styles, blend weights and regions (tfstyle.style), and texture synthesis."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import make_content, make_stage, make_style, save_png
from tfstyle import api, images
from tfstyle.config import make_config
from tfstyle.errors import UserError
from tfstyle.style import Style, blend_weights, layer_masks
from tolerances import assert_within_rounding

LAYERS = "block1_conv1=0.5,block2_conv1=0.3,block3_conv1=0.2"


def flat_style(colour, width=64, height=48):
    """A 'painting' of stripes in one colour: easy to tell apart from another one's."""
    stripes = 0.5 + 0.4 * np.sin(np.arange(width) / 2.0)[None, :, None]
    return np.clip(np.asarray(colour, np.float32) * stripes * np.ones((height, 1, 1)), 0, 1)


RED, BLUE = flat_style((1.0, 0.3, 0.2)), flat_style((0.2, 0.3, 1.0))


def objective_for(styles, **settings):
    config = make_config(style_layers=LAYERS, content_layer="block3_conv2", scales=1,
                         tv_weight=0.0, **settings)
    return make_stage(config, make_content(64, 48)[None], styles).optimizer.objective


def evaluate(objective, image):
    costs, gradient = objective.value_and_gradient(tf.constant(image))
    return {name: float(value) for name, value in costs.items()}, gradient.numpy()


@pytest.fixture
def image():
    return np.clip(make_content(64, 48)[None] + 0.2 * np.sin(np.arange(64 * 48 * 3)).reshape(
        1, 48, 64, 3), 0, 1).astype(np.float32)


def test_blend_weights_are_shares():
    assert blend_weights((), 3) == [1 / 3] * 3
    assert blend_weights((3.0, 1.0), 2) == [0.75, 0.25]


def test_a_blend_of_1_and_0_is_the_first_style_alone(image):
    alone = evaluate(objective_for([Style(RED[None])]), image)
    blended = evaluate(objective_for([Style(RED[None], 1.0), Style(BLUE[None], 0.0)]), image)
    assert blended[0] == alone[0]  # the same sums, plus exact zeros
    np.testing.assert_array_equal(blended[1], alone[1])


def test_the_style_cost_is_the_weighted_sum_of_each_styles(image):
    red = evaluate(objective_for([Style(RED[None])]), image)[0]
    blue = evaluate(objective_for([Style(BLUE[None])]), image)[0]
    blended = evaluate(objective_for([Style(RED[None], 0.7), Style(BLUE[None], 0.3)]), image)[0]
    for name in ("style", "style/block1_conv1", "style/block3_conv1"):
        assert_within_rounding(blended[name], 0.7 * red[name] + 0.3 * blue[name], terms=4,
                               magnitude=0.7 * red[name] + 0.3 * blue[name], computations=2)
    assert blended["content"] == red["content"]


def test_masks_are_averaged_down_to_each_layer():
    mask = np.zeros((48, 64), np.float32)
    mask[:, :20] = 1.0
    first, second, third = (m.numpy()[0, :, :, 0] for m in layer_masks(
        mask, ["block1_conv1", "block2_conv1", "block3_conv1"]))
    np.testing.assert_array_equal(first, mask)
    assert second.shape == (24, 32) and third.shape == (12, 16)
    np.testing.assert_array_equal(second[0, :10], 1.0)
    np.testing.assert_array_equal(third[0], [1, 1, 1, 1, 1, 0, *[0] * 10])  # 20 = 5 x 4


def test_a_mask_of_zeros_removes_that_styles_cost(image):
    red = evaluate(objective_for([Style(RED[None])]), image)
    ones, zeros = np.ones((48, 64), np.float32), np.zeros((48, 64), np.float32)
    masked = evaluate(objective_for([Style(RED[None], 0.5, ones), Style(BLUE[None], 0.5, zeros)]),
                      image)
    for name in ("style", "style/block1_conv1", "style/block2_conv1"):
        assert_within_rounding(masked[0][name], 0.5 * red[0][name], terms=2)
    assert np.isfinite(masked[1]).all()


def test_a_uniform_grey_mask_leaves_the_relative_style_cost_as_it_is(image):
    plain = evaluate(objective_for([Style(RED[None])]), image)[0]
    grey = evaluate(objective_for([Style(RED[None], 1.0, np.full((48, 64), 0.5, np.float32))]),
                    image)[0]
    for name in ("style", "style/block1_conv1"):
        assert_within_rounding(grey[name], plain[name], terms=64 * 48)


def halves(tmp_path, width=80, height=64):
    left = np.zeros((height, width), np.uint8)
    left[:, :width // 2] = 255
    return (save_png(left[..., None].repeat(3, -1) / 255.0, tmp_path / "left.png"),
            save_png((255 - left)[..., None].repeat(3, -1) / 255.0, tmp_path / "right.png"))


def redness(picture, columns):
    return float(np.mean(picture[:, columns, 0] - picture[:, columns, 2]))


def test_each_style_paints_its_own_region(tmp_path):
    content = save_png(make_content(), tmp_path / "content.png")
    red, blue = save_png(RED, tmp_path / "red.png"), save_png(BLUE, tmp_path / "blue.png")
    left, right = halves(tmp_path)
    config = make_config(content=content, style=f"{red},{blue}", style_masks=f"{left},{right}",
                         max_size=80, scales=1, steps=20, init="noise", quiet=True)
    picture = api.run_config(config).image[0]
    assert redness(picture, slice(8, 32)) > 0.1 and redness(picture, slice(48, 72)) < -0.1
    # Without the masks both styles paint everywhere: the halves blend alike.
    blended = api.run_config(config.replace(style_masks="")).image[0]
    assert abs(redness(blended, slice(8, 32)) - redness(blended, slice(48, 72))) < 0.05


def test_a_texture_has_no_content_and_the_styles_aspect(tmp_path):
    style = save_png(make_style(96, 64), tmp_path / "style.png")
    output = tmp_path / "texture.png"
    result = api.run_config(make_config(style=style, output=str(output), max_size=72, scales=1,
                                        steps=5, quiet=True))
    assert result.image.shape == (1, 48, 72, 3) and Image.open(output).size == (72, 48)
    assert "content" not in result.history[0] and result.history[-1]["style"] > 0
    assert result.history[-1]["total"] < result.history[0]["total"]
    # It starts from the seed's noise, not from any photo.
    again = api.stylize(None, style, max_size=72, scales=1, steps=5)
    assert np.array_equal(np.asarray(again), np.asarray(images.to_pil(result.image[0])))
    square = api.stylize(None, style, image_size=48, scales=1, steps=1)
    assert square.size == (48, 48)


@pytest.mark.parametrize("settings, words", [
    (dict(style_weights="1,2,3"), "--style_weights has 3 weight.s. for 2 style image"),
    (dict(style_weights="1,-1"), "--style_weights must be non-negative"),
    (dict(style_masks="MASK"), "--style_masks has 1 mask.s. for 2 style image"),
    (dict(style_masks="MASK,TALL"), "is not the shape of the first content image"),
])
def test_bad_blends_and_masks_are_refused(tmp_path, settings, words):
    content = save_png(make_content(), tmp_path / "content.png")
    left, _ = halves(tmp_path)
    tall = save_png(np.ones((80, 40, 3)), tmp_path / "tall.png")
    settings = {name: value.replace("MASK", left).replace("TALL", tall)
                for name, value in settings.items()}
    with pytest.raises(UserError, match=words):
        api.run_config(make_config(content=content, style=f"{content},{content}", max_size=48,
                                   scales=1, **settings))


def test_masks_need_a_content_image(tmp_path):
    left, _ = halves(tmp_path)
    with pytest.raises(UserError, match="need a content image"):
        api.run_config(make_config(style=left, style_masks=left, max_size=48))
