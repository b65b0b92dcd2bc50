"""AdaIN (Huang & Belongie 2017): the moments and their cost exactly, the AdaIN target's
statistics, blends and regions, and an AdaIN decoder trained for a few steps and applied
through run, folders and the API in any style."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tfstyle
from conftest import make_content, make_style, read_events, save_png
from tfstyle import adain, costs, images, schedule
from tfstyle.config import make_config
from tfstyle.run import cli as run_cli
from tfstyle.style import Style
from tfstyle.train import cli

EPS = costs.MOMENT_EPSILON


def test_channel_moments_are_each_channels_mean_and_spread_over_the_region():
    features = tf.constant([[[[1.0, 0.0], [3.0, 2.0]], [[5.0, 4.0], [7.0, 6.0]]]])  # [1, 2, 2, 2]
    mean, std = costs.channel_moments(features)
    np.testing.assert_allclose(mean, [[4.0, 3.0]])
    np.testing.assert_allclose(std, [[np.sqrt(5.0 + EPS)] * 2], rtol=1e-6)
    region = tf.constant([[[[1.0], [0.0]], [[1.0], [0.0]]]])  # the left column only: 1, 5 and 0, 4
    mean, std = costs.channel_moments(features, region)
    np.testing.assert_allclose(mean, [[3.0, 2.0]])
    np.testing.assert_allclose(std, [[np.sqrt(4.0 + EPS)] * 2], rtol=1e-6)
    mean, _ = costs.channel_moments(features, tf.zeros_like(region))
    np.testing.assert_array_equal(mean, [[0.0, 0.0]])  # an empty region


def test_moment_style_cost_is_the_squared_moment_differences_per_channel():
    generated = tf.constant([[[[1.0, 0.0], [3.0, 2.0]], [[5.0, 4.0], [7.0, 6.0]]]])
    std = np.sqrt(5.0 + EPS)
    style = (tf.constant([[2.0, 3.0]]), tf.constant([[std + 1.0, std - 2.0]]))
    # ((4 − 2)² + 0² + 1² + 2²) / 2 channels
    np.testing.assert_allclose(costs.moment_style_cost(style, generated), [4.5], rtol=1e-5)


def test_adain_gives_the_content_the_style_statistics_and_keeps_its_layout():
    rng = np.random.default_rng(0)
    content = tf.constant(rng.normal(3.0, 2.0, (2, 5, 6, 4)), tf.float32)
    style_mean, style_std = tf.constant([[1.0, -2.0, 0.5, 4.0]]), tf.constant([[0.5, 2.0, 3.0, 1.0]])
    result = adain.adaptive_instance_normalization(content, style_mean, style_std)
    mean, std = costs.channel_moments(result)
    np.testing.assert_allclose(mean, np.repeat(style_mean, 2, 0), atol=1e-5)
    np.testing.assert_allclose(std, np.repeat(style_std, 2, 0), rtol=1e-4)
    # Per channel, an increasing affine map of the content: the same positions stay highest.
    np.testing.assert_array_equal(np.argsort(result[0, ..., 0].numpy().ravel()),
                                  np.argsort(content[0, ..., 0].numpy().ravel()))


def test_the_target_blends_styles_by_weight_regions_and_strength():
    rng = np.random.default_rng(1)
    content = tf.constant(rng.normal(0.0, 1.0, (1, 4, 4, 3)), tf.float32)
    first = (tf.constant([[5.0, 5.0, 5.0]]), tf.constant([[1.0, 1.0, 1.0]]))
    second = (tf.constant([[-5.0, -5.0, -5.0]]), tf.constant([[2.0, 2.0, 2.0]]))
    styled = [adain.adaptive_instance_normalization(content, *moments) for moments in (first, second)]
    np.testing.assert_allclose(adain.blended_target(content, [first], [1.0], [None], 0.0), content)
    np.testing.assert_allclose(adain.blended_target(content, [first], [1.0], [None]), styled[0],
                               rtol=1e-6)
    np.testing.assert_allclose(adain.blended_target(content, [first], [1.0], [None], 0.25),
                               content + 0.25 * (styled[0] - content), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adain.blended_target(content, [first, second], [0.7, 0.3],
                                                    [None, None]),
                               0.7 * styled[0] + 0.3 * styled[1], rtol=1e-5, atol=1e-5)
    # Regions: the left half in the first style, the right in the second, each with its own
    # statistics of the content taken over its half.
    left = np.zeros((1, 4, 4, 1), np.float32)
    left[:, :, :2] = 1
    target = adain.blended_target(content, [first, second], [0.5, 0.5], [left, 1 - left])
    for half, (mean, std) in ((slice(0, 2), first), (slice(2, 4), second)):
        np.testing.assert_allclose(costs.channel_moments(target[:, :, half])[0], mean, atol=1e-4)
        np.testing.assert_allclose(costs.channel_moments(target[:, :, half])[1], std, rtol=1e-3)
    # Where no region reaches, the content's own features stay; a grey region blends.
    np.testing.assert_allclose(adain.blended_target(content, [first], [1.0], [0 * left]), content)
    np.testing.assert_allclose(adain.blended_target(content, [first], [1.0], [0.5 + 0 * left]),
                               content + 0.5 * (styled[0] - content), rtol=1e-5, atol=1e-5)
    # A style everywhere beside one in a region: where both are, they share by weight.
    target = adain.blended_target(content, [first, second], [0.5, 0.5], [None, left])
    np.testing.assert_allclose(target[:, :, 2:], styled[0][:, :, 2:], rtol=1e-5, atol=1e-5)
    # Statistics over the valid part only: the padding does not count.
    valid = np.ones((1, 4, 5, 1), np.float32)
    valid[:, :, 4:] = 0
    padded = tf.concat([content, content[:, :, 3:4] * 100], axis=2)
    np.testing.assert_allclose(
        adain.blended_target(padded, [first], [1.0], [None], valid=valid)[:, :, :4], styled[0],
        rtol=1e-5, atol=1e-5)


def test_the_decoder_paints_eight_times_the_encoders_size_and_loads_in_safe_mode(tmp_path):
    decoder = adain.decoder(4)
    picture = decoder(tf.random.uniform([2, 3, 5, 512]))
    assert picture.shape == (2, 24, 40, 3)
    assert 0 <= float(tf.reduce_min(picture)) and float(tf.reduce_max(picture)) <= 1
    decoder.save(tmp_path / "decoder.keras")
    model = tfstyle.load_model(tmp_path / "decoder.keras")
    assert model.arbitrary and not model.levels
    photo = make_content(44, 30)[None]  # not a multiple of 8: padded, then cut back
    painted = model.paint(photo, [Style(make_style(40, 40)[None])])
    assert painted.shape == (1, 30, 44, 3)
    # Untrained, on VGG19's real activations (in the thousands), it is not saturated: a
    # sigmoid stuck at 0 or 1 would have no gradient to learn from.
    assert 1e-3 < painted.std() and 0.01 < painted.min() and painted.max() < 0.99


TINY = ["--method=adain", "--steps=4", "--batch_size=2", "--crop_size=32", "--width=4",
        "--checkpoint_every=2", "--sample_every=2", "--log_every=1", "--held_out=1", "--quiet",
        "--style_layers=block1_conv1=0.5,block2_conv1=0.5"]


@pytest.fixture
def trained(tmp_path):
    """An AdaIN decoder trained for 4 steps on 3 tiny photos and 3 tiny 'paintings'."""
    photos, paintings = tmp_path / "photos", tmp_path / "paintings"
    photos.mkdir()
    paintings.mkdir()
    for number in range(3):
        save_png(make_content(48 + 8 * number, 40), photos / f"photo{number}.png")
        save_png(make_style(40 + 8 * number, 40)[:, :, [number, (number + 1) % 3, 2 - number]],
                 paintings / f"painting{number}.png")
    model_dir = tmp_path / "adain"
    assert cli(["tfstyle.train", f"--content_dir={photos}", f"--style={paintings}",
                f"--model_dir={model_dir}", *TINY]) == 0
    return model_dir


def test_an_adain_decoder_trains_with_its_costs_logged_and_its_held_out_pair_shown(trained):
    record = json.loads((trained / "model.json").read_text())
    assert record["steps_done"] == 4 and record["method"] == "adain"
    assert "residual_blocks" not in record and "levels" not in record
    events = read_events(trained / "logs" / "train")
    for tag in ("cost/total", "cost/content", "cost/style", "style/block2_conv1"):
        assert [event.step for event in events.Tensors(tag)] == [1, 2, 3, 4], tag
    assert [event.step for event in events.Tensors("generated")] == [2, 4]
    assert json.loads((trained / "train.json").read_text())["style"].endswith("paintings")


def test_an_adain_network_paints_any_style_through_run_at_any_strength(trained, tmp_path,
                                                                        capsys):
    content = save_png(make_content(50, 38), tmp_path / "content.png")
    style = save_png(make_style(48, 48), tmp_path / "style.png")
    written = {}
    for alpha in ("1", "0.5", "0"):
        output = tmp_path / f"out{alpha}.png"
        assert run_cli(["tfstyle", f"--model={trained}", f"--content={content}",
                        f"--style={style}", f"--alpha={alpha}", f"--output={output}",
                        "--max_size=50", "--quiet"]) == 0
        written[alpha] = np.asarray(images.load_image(str(output)), np.float32) / 255
    assert written["1"].shape == (38, 50, 3)
    model = tfstyle.load_model(trained)
    photo = images.to_array(images.load_image(content), (50, 38))[None]
    style_size = schedule.style_size_at(make_config(), (48, 48), (50, 38))
    style_image = images.to_array(images.load_image(style), style_size)[None]
    expected = model.paint(photo, [Style(style_image)], 0.5)[0]
    assert np.abs(written["0.5"] - expected).max() <= 1 / 255 + 1e-6
    assert np.abs(written["1"] - written["0"]).max() > 0.01
    # Two styles blended by weight, and each in its region of the photo.
    mask = np.zeros((38, 50), np.float32)
    mask[:, :25] = 1
    masks = [save_png(np.repeat(m[..., None], 3, -1), tmp_path / f"mask{n}.png")
             for n, m in enumerate((mask, 1 - mask))]
    other = save_png(make_style(48, 48)[..., ::-1], tmp_path / "other.png")
    for extra in ([f"--style_weights=0.3,0.7"], [f"--style_masks={','.join(masks)}"]):
        assert run_cli(["tfstyle", f"--model={trained}", f"--content={content}",
                        f"--style={style},{other}", *extra, f"--output={tmp_path / 'two.png'}",
                        "--max_size=50", "--overwrite", "--quiet"]) == 0
    # The API: a PIL image in, a PIL image out; colours kept; a folder of photos.
    picture = model(make_content(50, 38), max_size=100, style=make_style(48, 48), alpha=0.7)
    assert picture.size == (100, 76)
    assert run_cli(["tfstyle", f"--model={trained}", f"--content={content}", f"--style={style}",
                    "--preserve_colors=luminance", f"--output={tmp_path / 'kept.png'}",
                    "--quiet"]) == 0
    folder = tmp_path / "photos"
    assert run_cli(["tfstyle", f"--model={trained}", f"--content={folder}", f"--style={style}",
                    f"--output={tmp_path / 'folder'}", "--quiet"]) == 0
    assert sorted(os.listdir(tmp_path / "folder")) == [
        "photo0.png", "photo1.png", "photo2.png", "tfstyle-summary.json"]


@pytest.mark.parametrize("flags, words", [
    ([], "is an AdaIN network: it paints any style, so give one with --style"),
    (["--style=sample:starry_night", "--alpha=1.5"], "--alpha is the style's strength"),
    (["--style=sample:starry_night,sample:starry_night", "--style_weights=1"],
     "--style_weights has 1 weight(s) for 2 style image(s)"),
    (["--style=sample:starry_night,sample:starry_night", "--style_masks=sample:tubingen"],
     "--style_masks has 1 mask(s) for 2 style image(s)"),
    (["--style=sample:starry_night", "--preset=coursera"], "--preset=coursera sets --alpha=10"),
])
def test_adain_runs_refuse_what_cannot_work_in_one_line(trained, tmp_path, capsys, flags, words):
    for content in ("sample:tubingen", str(tmp_path / "photos")):
        output = tmp_path / ("out.png" if content.startswith("sample") else "out")
        assert run_cli(["tfstyle", f"--model={trained}", f"--content={content}", *flags,
                        f"--output={output}", "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert words in error and len(error.splitlines()) == 1, error
        assert not output.exists() or not os.listdir(output)


@pytest.mark.parametrize("flags, words", [
    (["--crop_size=36"], "--crop_size must be a multiple of 8"),
    (["--content_layers=block2_conv2=1"], "--content_layers has no part in --method=adain"),
    (["--style="], "Say which style images to learn from with --style=DIR"),
    (["--held_out=3"], "--style '"),
])
def test_bad_adain_training_settings_are_one_line(tmp_path, capsys, flags, words):
    photos, paintings = tmp_path / "photos", tmp_path / "paintings"
    for folder in (photos, paintings):
        folder.mkdir()
        for number in range(3):
            save_png(make_content(48, 40), folder / f"image{number}.png")
    save_png(make_content(48, 40), photos / "image3.png")  # more photos than paintings
    assert cli(["tfstyle.train", f"--content_dir={photos}", f"--style={paintings}",
                f"--model_dir={tmp_path / 'model'}", *TINY, *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert words in error and len(error.splitlines()) == 1, error
