"""Image I/O: read any image Pillow can, size it for the network, write results safely."""
from __future__ import annotations

import contextlib
import io
import itertools
import os
import struct
import tempfile
import warnings
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Mapping, Optional, Sequence, Union

import numpy as np
from absl import logging
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from tfstyle.errors import UserError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

# VGG19 halves the image four times before block5; below this the deepest layers vanish.
MIN_SIDE = 32

SAMPLES = ("tubingen", "starry_night")

# Ancillary PNG chunks that Pillow decompresses into memory under a cap (MAX_TEXT_CHUNK,
# MAX_TEXT_MEMORY) and tfstyle never uses: text, and the colour profile (not applied here).
PNG_METADATA = (b"tEXt", b"zTXt", b"iTXt", b"iCCP")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Temporary files are named with this short prefix, not the output's name, so that the
# temporary name fits the file system wherever the output's own name does.
TEMP_PREFIX = ".tfstyle-"


def sample_path(name: str) -> str:
    """Path of an image shipped with tfstyle (see tfstyle/samples/CREDITS.md)."""
    if name not in SAMPLES:
        raise UserError(f"Unknown sample '{name}'; the samples are: {', '.join(SAMPLES)}.")
    return str(resources.files("tfstyle") / "samples" / f"{name}.jpg")


def load_image(source: ImageLike) -> Image.Image:
    """An RGB PIL image from a path, 'sample:NAME', a PIL image or an array.

    Pixel values are read by type, never guessed from their largest value: uint8 arrays and
    8-bit files as [0, 255]; uint16 arrays and 16-bit files (and Pillow's 32-bit "I" images,
    which hold them) as [0, 65535]; other integer arrays as [0, 255]; float arrays and float
    files as [0, 1]. Values outside that range, NaN and infinities are refused, as are arrays
    of other dtypes (bool, complex, object). Arrays are shaped [H, W], [H, W, 3] or [H, W, 4].
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
        return _to_rgb(source, "The image")
    path = str(source)
    if path.startswith("sample:"):
        path = sample_path(path[len("sample:"):])
    if not os.path.exists(path):
        raise UserError(f"Image file '{path}' does not exist.")
    if os.path.isdir(path):
        raise UserError(f"'{path}' is a directory, not an image file.")
    if not os.path.isfile(path):
        raise UserError(f"'{path}' is not a regular file (a pipe or a device?); give an image "
                        "file.")
    if os.path.getsize(path) == 0:
        raise UserError(f"Image file '{path}' is empty.")
    try:
        return _read(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"'{path}' claims more than {Image.MAX_IMAGE_PIXELS} pixels; refusing it "
                        "as a possible decompression bomb.") from None
    except UnidentifiedImageError:
        raise UserError(f"'{path}' is not an image format Pillow can read.") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as error:
        raise UserError(f"'{path}' is damaged or truncated ({error}).") from None


def _read(path: str) -> Image.Image:
    try:
        return _decode(path, path)
    except ValueError:
        # Pillow refuses a PNG whose text or colour profile exceeds its caps, though the pixels
        # are fine; read them without those chunks. The caps stay: they bound read_png_text.
        if not _is_png(path):
            raise
        return _decode(_without_png_metadata(path), path)


def _decode(source: Union[str, BinaryIO], path: str) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit; refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source) as image:
            if getattr(image, "n_frames", 1) > 1:
                logging.warning("'%s' has %d frames; using the first.", path, image.n_frames)
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image), f"'{path}'")


def _is_png(path: str) -> bool:
    with open(path, "rb") as file:
        return file.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE


def _without_png_metadata(path: str) -> io.BytesIO:
    """The PNG file at `path` less its PNG_METADATA chunks; anything damaged is left as it is,
    for Pillow to report."""
    with open(path, "rb") as file:
        data = file.read()
    kept = [data[:len(PNG_SIGNATURE)]]
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        end = position + 12 + length  # length, type, data, CRC
        if kind not in PNG_METADATA:
            kept.append(data[position:end])
        position = end
    kept.append(data[position:])
    return io.BytesIO(b"".join(kept))


def _to_bytes(values: np.ndarray, top: float, name: str, kind: str) -> np.ndarray:
    """`values`, which must be finite and in [0, top], as uint8 in [0, 255]."""
    if not np.isfinite(values).all():
        raise UserError(f"{name} has NaN or infinite pixel values; give it finite {kind} values "
                        f"from 0 to {top:g}.")
    low, high = (values.min(), values.max()) if values.size else (0, 0)
    if low < 0 or high > top:
        raise UserError(f"{name} has {kind} pixels from {low:g} to {high:g}, but tfstyle reads "
                        f"such pixels as 0 to {top:g}; rescale it to that range or save it as an "
                        "8-bit image.")
    return np.floor(values.astype(np.float64) * (255.0 / top) + 0.5).astype(np.uint8)


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """RGB, 8 bits per channel: 16-bit images scaled by their depth, float ones from [0, 1]
    (see load_image), transparency composited on white, CMYK and palettes converted. `name`
    (the file, quoted, or "The image") is what an error names."""
    if image.mode == "F":
        image = Image.fromarray(_to_bytes(np.asarray(image), 1.0, name, "floating-point"))
    elif image.mode == "I" or image.mode.startswith("I;16"):
        kind = "16-bit" if image.mode.startswith("I;16") else "32-bit integer"
        image = Image.fromarray(_to_bytes(np.asarray(image), 65535, name, kind))
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
    array = _array_bytes(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return _to_rgb(Image.fromarray(array), "The image array")


def _array_bytes(array: np.ndarray) -> np.ndarray:
    """An image array as uint8, its range chosen by its dtype (see load_image)."""
    dtype = array.dtype
    name = f"The image array of dtype {dtype}"
    if dtype == np.uint8:
        return array
    if dtype.kind == "f":
        return _to_bytes(array, 1.0, name, "floating-point")
    if dtype.kind in "ui":
        return _to_bytes(array, 65535 if dtype == np.uint16 else 255, name, "integer")
    raise UserError(f"An image array must hold integers or floats, not {dtype} values; convert "
                    "it to uint8 (0 to 255) or float (0 to 1).")


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


def to_pil(array: np.ndarray, name: str = "The picture") -> Image.Image:
    """[H, W, 3] floats in [0, 1] -> 8-bit RGB image. NaN and infinities are refused: cast to
    bytes they would silently become black. `name` is what that error calls the picture."""
    array = np.asarray(array)
    if not np.isfinite(array).all():
        raise UserError(f"{name} has NaN or infinite pixels, so it was not written; a lower "
                        "--learning_rate or other weights may help.")
    return Image.fromarray(np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8))


def temporary_file(directory: str | os.PathLike, prefix: str, suffix: str) -> tuple[int, str]:
    """mkstemp's (fd, path) in `directory`, with the mode a plain open() would give rather than
    mkstemp's private 0600: the file is renamed into place for others to read."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)
    return fd, path


def _encode(image: Image.Image, image_format: str, file: BinaryIO,
            text: Optional[Mapping[str, str]] = None) -> None:
    """The one way tfstyle encodes a picture, so check_output_path's trial is the real save.
    A PNG gets `text` as text chunks (other formats have no such place and ignore it)."""
    options = {}
    if text and image_format == "PNG":
        options["pnginfo"] = PngImagePlugin.PngInfo()
        for key, value in text.items():
            options["pnginfo"].add_text(key, value)
    image.save(file, format=image_format, **options)


def _directory(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _name_max(directory: Path) -> int:
    """The longest file name, in bytes, that `directory`'s file system takes."""
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # unknown, or no pathconf (Windows)
        return 255
    return limit if limit > 0 else 255


def _link_new(temp: str, path: Path) -> None:
    """Give the file `temp` the name `path` only if no file has it, even one another process
    creates at the same moment: FileExistsError if one does."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError:
        # No hard links here (FAT, some network file systems): claim the name exclusively,
        # then fill it atomically.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(temp, path)
    else:
        os.unlink(temp)


def _numbered(path: Path, number: int) -> Path:
    """'out.<number>.png' beside 'out.png', the stem shortened to keep the name legal."""
    stem, limit = path.stem, _name_max(_directory(path))
    while len(os.fsencode(f"{stem}.{number}{path.suffix}")) > limit:
        stem = stem[:-1]
    return path.with_name(f"{stem}.{number}{path.suffix}")


def _keep_beside(temp: str, path: Path) -> None:
    """`path` was taken while the run worked: keep the result under the first free
    numbered name beside it, and say so."""
    for number in itertools.count(1):
        kept = _numbered(path, number)
        try:
            _link_new(temp, kept)
        except FileExistsError:
            continue
        raise UserError(f"'{path}' appeared while this run was working (another run writing "
                        f"it?), so it was left as it is and this run's result was saved as "
                        f"'{kept}'.")


def save_image(array: np.ndarray, path: str | os.PathLike,
               text: Optional[Mapping[str, str]] = None, overwrite: bool = True) -> None:
    """Write atomically: a crash mid-write leaves the previous file, never half an image.
    Without `overwrite` the file is only created, never replaced, even if another process
    creates it meanwhile: then the picture goes beside it (see _keep_beside). A PNG gets
    `text` as text chunks."""
    path = Path(path)
    image = to_pil(array, f"The picture for '{path}'")
    image_format = writable_format(path)
    fd, temp = temporary_file(_directory(path), TEMP_PREFIX, ".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            _encode(image, image_format, file, text)
        if overwrite:
            os.replace(temp, path)
            return
        try:
            _link_new(temp, path)
        except FileExistsError:
            _keep_beside(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):  # already renamed, unless it failed
            os.unlink(temp)


def save_elsewhere(array: np.ndarray, path: str | os.PathLike,
                   text: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Write the picture meant for `path`, which could not be written (a full disk, a
    read-only mount), under a fresh name in the temporary directory, so the work is not lost.
    Returns that name, or None when it cannot be written there either."""
    path = Path(path)
    try:
        fd, kept = tempfile.mkstemp(prefix=f"tfstyle-{path.stem[:40]}-", suffix=path.suffix)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "wb") as file:
            _encode(to_pil(array), writable_format(path), file, text)
        return kept
    except (OSError, UserError):
        os.unlink(kept)
        return None


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


def unique_names(names: Sequence[str]) -> list[str]:
    """`names` with '-2', '-3', ... appended to a name already taken (two photo.jpg from
    different folders give photo and photo-2)."""
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, attempt = name, 1
        while candidate in taken:
            attempt += 1
            candidate = f"{name}-{attempt}"
        taken.add(candidate)
        unique.append(candidate)
    return unique


def batch_output_paths(output: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """Where each image of a batch goes: 'out.png' itself for one image; else 'out-<name>.png'
    per image, names made unique by unique_names."""
    if len(names) == 1:
        return [str(output)]
    output = Path(output)
    return [str(output.with_name(f"{output.stem}-{name}{output.suffix}"))
            for name in unique_names(names)]


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse an output we could not or should not write, before any work is done."""
    path = Path(path)
    if os.path.isdir(path):  # (os.path, unlike Path, takes a name too long as "no")
        raise UserError(f"Cannot write '{path}': it is a directory.")
    image_format = writable_format(path)
    try:  # some of Pillow's writers exist only as stubs, or take no RGB image: really try
        _encode(Image.new("RGB", (MIN_SIDE, MIN_SIDE)), image_format, io.BytesIO())
    except Exception as error:  # they fail in many ways: OSError, ValueError, KeyError, ...
        raise UserError(f"Cannot write '{path}': Pillow cannot save an RGB picture as "
                        f"{image_format} ({error}); use .png or .jpg.") from None
    directory = _directory(path)
    if not directory.is_dir():
        problem = "is a file, not a directory" if directory.exists() else "does not exist"
        raise UserError(f"Cannot write '{path}': '{directory}' {problem}.")
    size, limit = len(os.fsencode(path.name)), _name_max(directory)
    if size > limit:  # quoted in part: the whole name would make a line too long to read
        raise UserError(f"Cannot write '{path.name[:24]}...{path.name[-24:]}' in '{directory}': "
                        f"the name is {size} bytes long and this file system takes at most "
                        f"{limit}; choose a shorter name.")
    if os.path.lexists(path) and not overwrite:  # a link to nothing is taken too
        raise UserError(f"'{path}' already exists; pass --overwrite to replace it.")
    try:  # permission bits do not tell root or read-only file systems apart: really try
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise UserError(f"Cannot write '{path}': the directory '{directory}' is not writable "
                        f"({error.strerror}).") from None
