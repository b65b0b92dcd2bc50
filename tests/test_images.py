import os

import numpy as np
import pytest
from PIL import Image

from tfstyle import images
from tfstyle.errors import UserError

from conftest import save_png


def test_samples_ship_with_the_package():
    for name in images.SAMPLES:
        picture = images.load_image(f"sample:{name}")
        assert picture.mode == "RGB" and max(picture.size) == 640
    with pytest.raises(UserError, match="Unknown sample"):
        images.load_image("sample:mona_lisa")


def test_load_from_path_pil_and_array(tmp_path, content_array):
    path = save_png(content_array, tmp_path / "c.png")
    from_path = np.asarray(images.load_image(path))
    from_array = np.asarray(images.load_image(content_array))
    from_pil = np.asarray(images.load_image(Image.open(path)))
    assert from_path.shape == (64, 80, 3)
    np.testing.assert_array_equal(from_path, from_array)
    np.testing.assert_array_equal(from_path, from_pil)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 255  # top half opaque red, bottom half transparent
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    rgb = np.asarray(images.load_image(path))
    assert tuple(rgb[5, 5]) == (200, 0, 0)
    assert tuple(rgb[35, 5]) == (255, 255, 255)


def test_grayscale_becomes_rgb(tmp_path):
    path = tmp_path / "g.png"
    Image.fromarray(np.full((40, 50), 77, np.uint8), "L").save(path)
    assert np.asarray(images.load_image(path)).shape == (40, 50, 3)


def test_exif_orientation_is_honoured(tmp_path):
    picture = Image.new("RGB", (60, 40), (255, 0, 0))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    picture.save(path, exif=exif)
    assert images.load_image(path).size == (40, 60)


@pytest.mark.parametrize("make", [
    lambda p: p / "missing.png",
    lambda p: p,
    lambda p: (p / "empty.png").write_bytes(b"") or p / "empty.png",
    lambda p: (p / "text.jpg").write_text("hello") or p / "text.jpg",
])
def test_unreadable_inputs_are_user_errors(tmp_path, make):
    with pytest.raises(UserError):
        images.load_image(make(tmp_path))


def test_sizes():
    assert images.fit_size((640, 480), max_size=320) == (320, 240)
    assert images.fit_size((480, 640), max_size=100) == (75, 100)
    assert images.fit_size((640, 480), max_size=320, square=400) == (400, 400)
    assert images.match_area((100, 400), (200, 200)) == (100, 400)
    assert images.match_area((50, 200), (200, 200)) == (100, 400)


def test_to_array_range_and_minimum_size(content_array):
    picture = images.load_image(content_array)
    array = images.to_array(picture, (40, 32))
    assert array.shape == (32, 40, 3) and array.dtype == np.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    with pytest.raises(UserError, match="at least 32 pixels"):
        images.to_array(picture, (31, 64))


def test_save_is_atomic_and_round_trips(tmp_path, content_array):
    path = tmp_path / "out.png"
    images.save_image(content_array, path)
    images.save_image(content_array, path)  # replacing an existing file
    assert os.listdir(tmp_path) == ["out.png"]
    back = np.asarray(Image.open(path), np.float32) / 255
    assert np.abs(back - content_array).max() <= 0.5 / 255 + 1e-6


def test_saved_image_has_the_usual_permissions(tmp_path, content_array):
    """Not the 0600 of the temporary file it was written to: others may read it if the umask
    lets them, as with any file the user creates."""
    previous = os.umask(0o022)
    try:
        images.save_image(content_array, tmp_path / "a.png")
        os.umask(0o077)
        images.save_image(content_array, tmp_path / "b.png")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.png").stat().st_mode & 0o777 == 0o600


def test_output_path_checks(tmp_path):
    images.check_output_path(tmp_path / "fine.png")
    with pytest.raises(UserError, match="does not exist"):
        images.check_output_path(tmp_path / "nope" / "out.png")
    with pytest.raises(UserError, match="Pillow cannot write"):
        images.check_output_path(tmp_path / "out.xyz")


def rgb_values(path):
    return np.asarray(images.load_image(path)).astype(int)


def test_palette_with_transparency_la_and_cmyk(tmp_path):
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "p.png", transparency=1)
    assert tuple(rgb_values(tmp_path / "p.png")[0, 0]) == (255, 255, 255)
    Image.new("LA", (40, 40), (0, 255)).save(tmp_path / "la.png")
    assert tuple(rgb_values(tmp_path / "la.png")[0, 0]) == (0, 0, 0)
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red, green, blue = rgb_values(tmp_path / "cmyk.jpg")[20, 20]
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_and_float_images_are_rescaled_not_clipped(tmp_path):
    ramp16 = (np.linspace(0, 65535, 64 * 40).reshape(40, 64)).astype(np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "deep.png")
    values = rgb_values(tmp_path / "deep.png")
    assert values[0, 0, 0] == 0 and values[-1, -1, 0] == 255 and 120 < values[20, 32, 0] < 136
    ramp = np.linspace(0, 1, 64 * 40, dtype=np.float32).reshape(40, 64)
    Image.fromarray(ramp, "F").save(tmp_path / "float.tif")
    values = rgb_values(tmp_path / "float.tif")
    assert values[0, 0, 0] == 0 and values[-1, -1, 0] == 255 and 120 < values[20, 32, 0] < 136


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 40), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    red, green, blue = rgb_values(tmp_path / "anim.gif")[5, 5]
    assert red > 200 and blue < 50


def test_tiny_images_are_refused_with_the_minimum(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(UserError, match="1x1 pixels; VGG19 needs at least 32"):
        images.load_image(tmp_path / "dot.png")
    with pytest.raises(UserError, match="at least 32"):
        images.load_image(np.zeros((20, 50, 3), np.float32))
