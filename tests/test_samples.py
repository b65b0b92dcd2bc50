"""The bundled networks (tfstyle/samples/NAME.keras with their training records NAME.json):
each loads offline and paints, and each record reads the same on any machine."""
import os

import numpy as np
import pytest

import tfstyle
from tfstyle import fast, images
from conftest import make_content, make_style

MAX_BYTES = 10 * 1024 * 1024  # the limit for a committed network


def test_the_three_bundled_networks_are_there():
    assert {"johnson_starry_night", "conditional", "adain"} <= set(fast.sample_models())


@pytest.mark.parametrize("name", fast.sample_models())
def test_a_bundled_network_loads_offline_and_paints_a_picture_of_its_size(name):
    model = tfstyle.load_model(f"sample:{name}")
    assert os.path.getsize(fast.model_path(f"sample:{name}")) <= MAX_BYTES
    photo = make_content(72, 56)
    picture = (model(photo, style=make_style(64, 64)) if model.arbitrary
               else model(photo))
    painted = np.asarray(picture, np.float32) / 255
    assert painted.shape == photo.shape
    assert np.isfinite(painted).all()
    assert np.abs(painted - photo).mean() > 0.02  # it paints, not copies


@pytest.mark.parametrize("name", fast.sample_models())
def test_a_bundled_record_names_its_data_relative_to_the_repository(name):
    """The README's commands run from the repository with ../shared beside it; a record that
    kept the training machine's absolute paths would send fast_benchmark.py (which reads the
    held-out photos and styles from it) to folders no other machine has."""
    record = tfstyle.load_model(f"sample:{name}").settings
    paths = [record["content_dir"], *record["held_out_photos"],
             *(style for style in record["style"].split(",") if not style.startswith("sample:"))]
    assert paths and not [path for path in paths if os.path.isabs(path)]
    assert record["steps_done"] >= 1 and record["seconds"] > 0
    held_out = {os.path.basename(path) for path in record["held_out_photos"]}
    assert len(held_out) == record["held_out"]


def test_the_conditional_network_paints_each_of_its_named_styles_differently():
    model = tfstyle.load_model("sample:conditional")
    names = model.style_names.split(",")
    assert model.styles == len(names) >= 4
    photo = images.to_array(images.to_pil(make_content(64, 48)), (64, 48))[None]
    pictures = [model.stylise(photo, [float(k == number) for k in range(model.styles)])[0]
                for number in range(model.styles)]
    for first in range(model.styles):
        for second in range(first + 1, model.styles):
            assert np.abs(pictures[first] - pictures[second]).mean() > 0.01
    record = model.settings
    assert record["extend"] == "sample:johnson_starry_night"
    base = tfstyle.load_model("sample:johnson_starry_night")
    # --extend keeps the base's style bit for bit: the conditional network's first style is
    # the bundled Johnson network's picture, so the two bundles are of one training run.
    np.testing.assert_array_equal(pictures[0], base.stylise(photo)[0])
