"""Image I/O: read any image Pillow can, size it for the network, write results safely."""
from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tfstyle.errors import UserError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

# VGG19 halves the image four times before block5; below this the deepest layers vanish.
MIN_SIDE = 32

SAMPLES = ("tubingen", "starry_night")


def sample_path(name: str) -> str:
    """Path of an image shipped with tfstyle (see tfstyle/samples/CREDITS.md)."""
    if name not in SAMPLES:
        raise UserError(f"Unknown sample '{name}'; the samples are: {', '.join(SAMPLES)}.")
    return str(resources.files("tfstyle") / "samples" / f"{name}.jpg")


def load_image(source: ImageLike) -> Image.Image:
    """An RGB PIL image from a path, 'sample:NAME', a PIL image or an array.

    Arrays may be uint8 in [0, 255] or float in [0, 1], shaped [H, W], [H, W, 3] or [H, W, 4].
    EXIF orientation is honoured and transparency is composited on white.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    path = str(source)
    if path.startswith("sample:"):
        path = sample_path(path[len("sample:"):])
    if not os.path.exists(path):
        raise UserError(f"Image file '{path}' does not exist.")
    if os.path.isdir(path):
        raise UserError(f"'{path}' is a directory, not an image file.")
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UserError(f"'{path}' is not an image Pillow can read ({error}).") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise UserError(f"An image array must be [H, W], [H, W, 3] or [H, W, 4]; got shape "
                        f"{array.shape}.")
    if array.dtype != np.uint8:
        array = np.clip(np.asarray(array, np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return _to_rgb(Image.fromarray(array))


def fit_size(size: tuple[int, int], max_size: int = 0, square: int = 0) -> tuple[int, int]:
    """(width, height) after scaling `size` so its longest side is max_size, or square×square."""
    if square:
        return square, square
    width, height = size
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def match_area(size: tuple[int, int], reference: tuple[int, int]) -> tuple[int, int]:
    """`size` scaled, aspect kept, to cover as many pixels as `reference`.

    Gram matrices sum over positions, so a style image with more pixels than the generated one
    would raise its style target by the ratio of the areas; matching areas keeps the
    Coursera normalisation exact when the two images differ in shape.
    """
    scale = ((reference[0] * reference[1]) / (size[0] * size[1])) ** 0.5
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def to_array(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Float32 [H, W, 3] in [0, 1], resized (bicubic, as the Coursera notebook does)."""
    width, height = size
    if min(width, height) < MIN_SIDE:
        raise UserError(f"An image of {width}x{height} pixels is too small: VGG19 needs at least "
                        f"{MIN_SIDE} pixels on each side.")
    if image.size != size:
        image = image.resize(size, Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def to_pil(array: np.ndarray) -> Image.Image:
    """[H, W, 3] floats in [0, 1] -> 8-bit RGB image."""
    return Image.fromarray(np.clip(np.asarray(array) * 255.0 + 0.5, 0, 255).astype(np.uint8))


def save_image(array: np.ndarray, path: str | os.PathLike) -> None:
    """Write atomically: a crash mid-write leaves the previous file, never half an image."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    image = to_pil(array)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            image.save(file, format=Image.registered_extensions()[path.suffix.lower()])
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def check_output_path(path: str | os.PathLike) -> None:
    """Refuse an output we could not write, before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in Image.registered_extensions():
        raise UserError(f"Cannot write '{path}': Pillow knows no image format for the extension "
                        f"'{path.suffix}'; use .png or .jpg.")
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UserError(f"Cannot write '{path}': the directory '{directory}' does not exist.")
    if not os.access(directory, os.W_OK):
        raise UserError(f"Cannot write '{path}': the directory '{directory}' is not writable.")
    if path.is_dir():
        raise UserError(f"Cannot write '{path}': it is a directory.")
