"""Keeping the photo's colours: --preserve_colors=luminance|histogram (tfstyle.colors)."""
import numpy as np
import pytest

from conftest import make_content, make_style
from tfstyle import api, colors, images
from tfstyle.config import make_config


def test_yiq_round_trips():
    rgb = np.random.default_rng(0).uniform(0, 1, (5, 7, 3))
    np.testing.assert_allclose(colors.from_yiq(colors.to_yiq(rgb)), rgb, rtol=0, atol=1e-12)
    assert np.allclose(colors.to_yiq(np.ones(3)), [1.0, 0.0, 0.0], atol=1e-6)  # white: no chroma


def test_luminance_transfer_keeps_the_generated_luminance_and_the_contents_chroma():
    rng = np.random.default_rng(1)
    content, generated = (rng.uniform(0.3, 0.7, (20, 30, 3)) for _ in range(2))
    result = colors.luminance_transfer(generated, content)
    inside = np.all((result > 0) & (result < 1), axis=-1)  # nothing clipped there
    assert inside.mean() > 0.9
    ours, photo, optimised = (colors.to_yiq(image)[inside] for image in (result, content,
                                                                        generated))
    np.testing.assert_allclose(ours[:, 1:], photo[:, 1:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours[:, 0], optimised[:, 0], rtol=0, atol=1e-6)


def test_histogram_matching_gives_the_style_the_contents_mean_and_covariance():
    rng = np.random.default_rng(2)
    content = 0.5 + 0.08 * rng.standard_normal((40, 50, 3)) @ [[1, 0.3, 0], [0, 1, 0.2], [0, 0, 1]]
    style = 0.4 + 0.1 * rng.standard_normal((30, 30, 3)) @ [[1, 0, 0.5], [0.4, 1, 0], [0, 0, 0.7]]
    matched = colors.match_histogram(style, content)
    assert matched.shape == style.shape and 0 < matched.min() and matched.max() < 1  # no clipping
    pixels, photo = matched.reshape(-1, 3), content.reshape(-1, 3)
    np.testing.assert_allclose(pixels.mean(axis=0), photo.mean(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.cov(pixels, rowvar=False), np.cov(photo, rowvar=False),
                               rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.cov(style.reshape(-1, 3), rowvar=False),
                           np.cov(photo, rowvar=False), atol=1e-3)


def test_a_grey_style_is_matched_without_dividing_by_zero():
    matched = colors.match_histogram(np.full((32, 32, 3), 0.5), make_content())
    assert np.isfinite(matched).all()


def chroma(image):
    return colors.to_yiq(image)[..., 1:]


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_run_with_luminance_only_writes_the_photos_chroma(content_array, style_array,
                                                             optimizer):
    settings = dict(max_size=80, scales=2, scale_steps=2, steps=3, optimizer=optimizer,
                    quiet=True)
    kept = api.stylize(content_array, style_array, preserve_colors="luminance", **settings)
    painted = api.stylize(content_array, style_array, **settings)
    photo = images.to_array(images.load_image(content_array), kept.size)
    ours, theirs = (np.asarray(picture, np.float64) / 255 for picture in (kept, painted))
    inside = np.all((ours > 0.01) & (ours < 0.99), axis=-1)
    assert inside.mean() > 0.8
    # 8-bit rounding of each channel moves I and Q by at most 0.6/255.
    assert np.abs(chroma(ours)[inside] - chroma(photo)[inside]).max() <= 0.6 / 255 + 1e-6
    assert np.abs(chroma(theirs) - chroma(photo)).max() > 0.05


def test_histogram_mode_recolours_the_style_for_each_content_image():
    first, second = make_content(), make_content()[:, ::-1, ::-1].copy()
    config = make_config(preserve_colors="histogram")
    contents, (style,) = api.arrays_at(
        config, api.load_inputs(config, [first, second], [make_style()]), (80, 64))
    _, (plain,) = api.arrays_at(config.replace(preserve_colors=""),
                                api.load_inputs(config, [first], [make_style()]), (80, 64))
    assert style.image.shape == (2, *plain.image.shape[1:])
    for index in range(2):
        np.testing.assert_array_equal(style.image[index],
                                      colors.match_histogram(plain.image[0], contents[index]))
    result = api.run_config(config.replace(max_size=64, scales=1, steps=2, quiet=True),
                            [first, second], make_style())
    assert result.image.shape == (2, 51, 64, 3)
