"""Image I/O: read any image Pillow can, size it for the network, write results safely."""
from __future__ import annotations

import os
import struct
import tempfile
import warnings
from importlib import resources
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from absl import logging
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

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
    EXIF orientation is honoured and transparency is composited on white. Images with a side
    under MIN_SIDE pixels are refused: upscaling them would only invent the picture.
    """
    image = _open(source)
    if min(image.size) < MIN_SIDE:
        name = f"'{source}'" if isinstance(source, (str, os.PathLike)) else "The image"
        raise UserError(f"{name} is {image.width}x{image.height} pixels; VGG19 needs at least "
                        f"{MIN_SIDE} pixels on each side.")
    return image


def _open(source: ImageLike) -> Image.Image:
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
    if os.path.getsize(path) == 0:
        raise UserError(f"Image file '{path}' is empty.")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if getattr(image, "n_frames", 1) > 1:
                    logging.warning("'%s' has %d frames; using the first.", path, image.n_frames)
                image.load()
                return _to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"'{path}' claims more than {Image.MAX_IMAGE_PIXELS} pixels; refusing it "
                        "as a possible decompression bomb.") from None
    except UnidentifiedImageError:
        raise UserError(f"'{path}' is not an image format Pillow can read.") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise UserError(f"'{path}' is damaged or truncated ({error}).") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, 8 bits per channel: high-bit-depth and float images rescaled rather than clipped,
    transparency composited on white, CMYK and palettes converted."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, np.float64)
        top = values.max() if values.size else 0.0
        # Floats are usually [0, 1]; 16-bit integers span [0, 65535].
        scale = 1.0 if (image.mode == "F" and top <= 1.0) else (255.0 if top <= 255 else 65535.0)
        image = Image.fromarray(np.clip(values / scale * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode == "P" and "transparency" in image.info):
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


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def save_image(array: np.ndarray, path: str | os.PathLike,
               text: Optional[Mapping[str, str]] = None) -> None:
    """Write atomically: a crash mid-write leaves the previous file, never half an image.
    A PNG gets `text` as text chunks (other formats have no such place and ignore it)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    image = to_pil(array)
    image_format = writable_format(path)
    options = {}
    if text and image_format == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        for key, value in text.items():
            options["pnginfo"].add_text(key, value)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as file:
            image.save(file, format=image_format, **options)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def read_png_text(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks of the PNG file at `path`."""
    path = str(path)
    if not os.path.isfile(path):
        raise UserError(f"Image file '{path}' does not exist.")
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise UserError(f"'{path}' is a {image.format} file, not a PNG; only the PNGs "
                                "tfstyle writes carry a run record.")
            return dict(image.text)  # also reads chunks stored after the pixels
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise UserError(f"'{path}' is not an image Pillow can read ({error}).") from None


def writable_format(path: str | os.PathLike) -> str:
    """The Pillow format that `path`'s extension asks for, if Pillow can write it."""
    Image.init()
    extension = Path(path).suffix.lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None or image_format not in Image.SAVE:
        raise UserError(f"Cannot write '{path}': Pillow cannot write images with the extension "
                        f"'{extension or '(none)'}'; use .png or .jpg.")
    return image_format


def image_name(source: ImageLike, position: int) -> str:
    """A short name for an input image: its file's stem ('photo' for 'a/photo.jpg', 'tubingen'
    for 'sample:tubingen'), or its 1-based position in the batch when it has no name."""
    if not isinstance(source, (str, os.PathLike)):
        return str(position + 1)
    return Path(str(source).removeprefix("sample:")).stem or str(position + 1)


def batch_output_paths(output: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """Where each image of a batch goes: 'out.png' itself for one image; else 'out-<name>.png'
    per image, with '-2', '-3', ... appended to a name already taken (two photo.jpg from
    different folders give out-photo.png and out-photo-2.png)."""
    if len(names) == 1:
        return [str(output)]
    output = Path(output)
    taken: set[str] = set()
    paths = []
    for name in names:
        unique, attempt = name, 1
        while unique in taken:
            attempt += 1
            unique = f"{name}-{attempt}"
        taken.add(unique)
        paths.append(str(output.with_name(f"{output.stem}-{unique}{output.suffix}")))
    return paths


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse an output we could not or should not write, before any work is done."""
    path = Path(path)
    writable_format(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"Cannot write '{path}': it is a directory.")
    if not directory.is_dir():
        raise UserError(f"Cannot write '{path}': the directory '{directory}' does not exist.")
    if path.exists() and not overwrite:
        raise UserError(f"'{path}' already exists; pass --overwrite to replace it.")
    try:  # permission bits do not tell root or read-only file systems apart: really try
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise UserError(f"Cannot write '{path}': the directory '{directory}' is not writable "
                        f"({error.strerror}).") from None
