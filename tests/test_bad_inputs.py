"""A corpus of bad inputs, made here: each must give one readable line on stderr, exit status
2, no traceback, and write nothing.

Most cases run the CLI in-process (`tfstyle.run.cli`, the code `python -m tfstyle.run` runs,
minus interpreter start-up); a few run it as a real process to check the whole path.
"""
import io
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from tfstyle import run as tfstyle_run

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
