"""The scripts behind the README's figures (quality, convergence, large, lbfgs_choice, gallery,
benchmark_many) run end to end and their figures hang together (tiny sizes and steps: the
figures themselves are for the README, not for a test).

quality.py scores with the neutral scorer the project shares, ../shared/tools/style_score.py,
which CI has beside the repository; the images are made here."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_content, make_style, save_png

ROOT = Path(__file__).resolve().parents[1]
ENV_FREE = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def run(script, *args, timeout=600):
    import os
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **ENV_FREE})


def test_quality_script_scores_ours_and_the_reference(tmp_path):
    images, reference = tmp_path / "images", tmp_path / "reference"
    images.mkdir()
    reference.mkdir()
    save_png(make_content(192, 144), images / "tubingen.jpg")
    save_png(make_style(), images / "starry_night.jpg")
    save_png(make_content(192, 144)[:, ::-1], reference / "tubingen_starry.png")
    out = tmp_path / "out"
    result = run("quality.py", "--styles=starry_night", f"--images={images}",
                 f"--reference={reference}", f"--output_dir={out}", "--max_size=192",
                 "--flags=--scale_steps=3 --steps=3", f"--json={tmp_path / 'q.json'}")
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "q.json").read_text())["rows"]
    assert [row["style"] for row in rows] == ["starry_night"]
    row = rows[0]
    assert Image.open(row["output"]).size == (192, 144)
    assert row["seconds"] > 0
    assert row["better_on_both"] == (row["tfstyle_style_error"] <= row["reference_style_error"]
                                     and row["tfstyle_content_error"]
                                     <= row["reference_content_error"])
    table = result.stdout.splitlines()
    line = next(line for line in table if line.startswith("starry_night "))
    assert f"{row['tfstyle_style_error']:.4f}" in line and f"{row['reference_content_error']:.4f}" in line
    # The mirrored photo: a content error far above a stylised photo's.
    assert row["reference_content_error"] > row["tfstyle_content_error"]
    assert Image.open(out / "side_by_side.png").width > 2 * 192


def test_convergence_script_prints_the_ratio_last(tmp_path):
    plot = tmp_path / "convergence.png"
    result = run("convergence.py", "--size=128", "--steps=20", "--budget=0.5",
                 f"--plot={plot}", f"--json={tmp_path / 'c.json'}")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"best recipe \((\w+)\) time to the course recipe's 20-step cost / that "
                         r"recipe's time: (\S+)", last)
    assert match, last
    numbers = json.loads((tmp_path / "c.json").read_text())
    best, ratio = match.group(1), float(match.group(2))
    assert best in numbers["reach"]
    assert ratio == float(f"{numbers['reach'][best] / numbers['seconds']['coursera']:.3f}")
    assert numbers["target"] == numbers["curves"]["coursera"][-1][1]
    assert len(numbers["curves"]["coursera"]) == 20
    assert Image.open(plot).size[0] > 300


def test_large_script_prints_each_scale_and_the_peak_memory(tmp_path):
    output = tmp_path / "large.png"
    result = run("large.py", "--size=192x128", "--scales=2", "--scale_steps=2", "--steps=3",
                 "--tile_size=64", f"--output={output}")
    assert result.returncode == 0, result.stderr
    assert Image.open(output).size == (192, 128)
    rows = [line.split() for line in result.stdout.splitlines() if re.match(r"\s+\d+\s+\d+x", line)]
    assert [(row[0], row[1], row[2]) for row in rows] == [("1", "96x64", "64"), ("2", "192x128", "64")]
    assert [int(row[4]) for row in rows] == [2, 3]
    assert re.search(r"peak memory of this process: \d+\.\d GiB", result.stdout)


def test_lbfgs_choice_script_runs_scipys_half_without_tensorflow_probability():
    result = run("lbfgs_choice.py", "--size=64", "--iterations=3")
    assert result.returncode == 0, result.stderr
    scipy_row = next(line for line in result.stdout.splitlines() if line.startswith("scipy "))
    iterations, evaluations = (int(value) for value in scipy_row.split()[1:3])
    assert iterations == 3 and evaluations >= 3


def test_gallery_script_writes_a_labelled_sheet_per_control(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    save_png(make_content(256, 192), images / "tubingen.jpg")
    save_png(make_style(), images / "starry_night.jpg")
    save_png(make_style()[::-1], images / "the_scream.jpg")
    out = tmp_path / "out"
    result = run("gallery.py", "--sheets=regions,texture", "--max_size=192", "--max_steps=1",
                 f"--images={images}", f"--output_dir={out}", f"--json={tmp_path / 'g.json'}")
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "g.json").read_text())
    assert [row["sheet"] for row in rows] == ["regions", "texture", "texture", "texture"]
    assert Image.open(rows[0]["output"]).size == (192, 144)  # the photo's aspect
    assert Image.open(rows[1]["output"]).size == (192, 192)  # the square style's
    # One step at each of three scales, or at the one scale of the rearranged textures.
    assert [row["steps"] for row in rows] == [3, 3, 1, 1]
    assert Image.open(out / "texture.jpg").width > 2 * Image.open(out / "texture.jpg").height
    sky, town = (np.asarray(Image.open(out / f"mask_{name}.png"), np.int32) for name in ("sky", "town"))
    assert sky.shape == (192, 256) and np.all(sky + town == 255)
    assert sky[0, 0] == 255 and town[-1, 0] == 255  # sky on top, the town below
    assert "gallery: error" not in result.stderr


def test_gallery_rescales_the_size_dependent_preset_weights(tmp_path):
    import importlib.util

    from tfstyle.config import make_config

    spec = importlib.util.spec_from_file_location("gallery", ROOT / "scripts" / "gallery.py")
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    square, wide = tmp_path / "square.png", tmp_path / "wide.png"
    save_png(make_content(512, 512), square)
    save_png(make_content(512, 384), wide)
    for preset, name in (("gatys2016", "alpha"), ("jcjohnson", "tv_weight")):
        at_512 = getattr(gallery.sized(preset, {}, 512, 10, square), name)
        assert at_512 == getattr(make_config(preset), name)
        assert getattr(gallery.sized(preset, {}, 512, 10, wide), name) == pytest.approx(at_512 * 384 / 512, rel=1e-12)
        assert getattr(gallery.sized(preset, {}, 256, 10, wide), name) == pytest.approx(at_512 * 384 / 512 / 4, rel=1e-12)


def test_benchmark_many_times_both_engines_on_the_same_images(tmp_path):
    figures_file = tmp_path / "many.json"
    done = run("benchmark_many.py", "--images=2", "--max_size=48", "--photos=/nonexistent",
               "--settings=scales=1,steps=2", f"--json={figures_file}")
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(figures_file.read_text())
    for engine in ("local", "ray_1_worker", f"ray_{figures['cores']}_workers"):
        row = figures[engine]
        assert row["per_image"] == pytest.approx(row["seconds"] / 2)
        assert 0 < row["optimising_per_image"] < row["per_image"]
        assert re.search(rf"^{engine} +[0-9.]+ +[0-9.]+ +[0-9]+$", done.stdout, re.M)
    overhead = 100 * (figures["ray_1_worker"]["per_image"] / figures["local"]["per_image"] - 1)
    assert figures["ray_overhead_percent"] == pytest.approx(overhead)
    assert f"Ray's per-image overhead: {overhead:.1f}%" in done.stdout
    # Pictures with a longest side of 48 come back as float32 RGB.
    assert 12 * 48 * 24 <= figures["transfer_bytes"]["back_per_image"] <= 12 * 48 * 48


def test_fast_benchmark_times_and_scores_a_network_beside_gatys(tmp_path):
    from tfstyle.train import cli as train
    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(3):
        save_png(make_content(64, 48 + 4 * number), photos / f"photo{number}.png")
    style = save_png(make_style(48, 48), tmp_path / "style.png")
    assert train(["tfstyle.train", f"--content_dir={photos}", f"--style={style}",
                  f"--model_dir={tmp_path / 'net'}", "--steps=2", "--batch_size=1",
                  "--crop_size=32", "--width=4", "--residual_blocks=1", "--held_out=1",
                  "--log_every=1", "--quiet"]) == 0
    # An AdaIN network, scored in the same style (so the Gatys run is shared): paintings are
    # the photos with their channels turned.
    paintings = tmp_path / "paintings"
    paintings.mkdir()
    for number in range(3):
        save_png(make_style(48, 40 + 8 * number)[..., ::-1], paintings / f"painting{number}.png")
    assert train(["tfstyle.train", "--method=adain", f"--content_dir={photos}",
                  f"--style={paintings}", f"--model_dir={tmp_path / 'adain'}", "--steps=2",
                  "--batch_size=1", "--crop_size=32", "--width=4", "--held_out=1",
                  "--quiet"]) == 0
    out = tmp_path / "out"
    result = run("fast_benchmark.py", f"--models={tmp_path / 'net'},{tmp_path / 'adain'}",
                 f"--styles={style}", "--sizes=64,96", "--gatys", "--max_size=64",
                 "--flags=--scales=1 --steps=2", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "fast_benchmark.json").read_text())
    speeds = [row for row in report if "side" in row]
    assert [row["side"] for row in speeds] == [64, 96, 64, 96]
    assert all(row["images_per_second"] > 0 and row["peak_mib"] > 0 for row in speeds)
    johnson, adain = [row for row in report if "photo" in row]
    for scored in (johnson, adain):
        assert scored["photo"].endswith("photo0.png")  # the held-out photo
        assert Image.open(scored["fast"]).size == (64, 48)
        assert Image.open(scored["gatys"]).size == (64, 48)
        assert all(scored[f"{who}_{what}_error"] > 0 for who in ("fast", "gatys")
                   for what in ("style", "content"))
        assert f"{scored['fast_style_error']:.4f}" in result.stdout
    assert adain["gatys"] == johnson["gatys"] and adain["fast"] != johnson["fast"]
    assert result.stdout.count("Gatys style") == 2
    assert Image.open(out / "0_net_style_sheet.png").height > 48
    assert Image.open(out / "1_adain_style_sheet.png").height > 48
    # The same Gatys runs again, from the report: taken (and rescored), not run.
    again = run("fast_benchmark.py", f"--models={tmp_path / 'net'}", "--sizes=64",
                f"--gatys_from={out / 'fast_benchmark.json'}", "--max_size=64",
                "--flags=--scales=1 --steps=2", f"--output_dir={tmp_path / 'again'}")
    assert again.returncode == 0, again.stderr
    [rescored] = [row for row in json.loads((tmp_path / "again" / "fast_benchmark.json")
                                            .read_text()) if "photo" in row]
    for key in ("gatys", "gatys_seconds", "gatys_style_error", "gatys_content_error"):
        assert rescored[key] == johnson[key]
    assert not list((tmp_path / "again").glob("gatys*"))
    other = run("fast_benchmark.py", f"--models={tmp_path / 'net'}", "--sizes=64",
                f"--gatys_from={out / 'fast_benchmark.json'}", "--max_size=96",
                "--flags=--scales=1 --steps=2", f"--output_dir={tmp_path / 'other'}")
    assert other.returncode != 0
    assert "made with --max_size=64 --flags='--scales=1 --steps=2'" in other.stderr
    # The training curve of the README's records, from the run's TensorBoard log.
    curve = run("training_curve.py", str(tmp_path / "net"), f"--output={tmp_path / 'curve.png'}",
                "--smooth=1")
    assert curve.returncode == 0, curve.stderr
    assert "cost/style:" in curve.stdout and "at step 2" in curve.stdout
    assert Image.open(tmp_path / "curve.png").size == (700, 350)
