"""Shared fixtures: tiny images the tests make themselves (no ../shared needed)."""
import os

import numpy as np
import pytest
from PIL import Image

# Keep TensorFlow quiet and on the CPU path the tests were written for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_content(width: int = 80, height: int = 64) -> np.ndarray:
    """A smooth 'photo': a sky gradient over a dark ground with a bright disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([0.3 + 0.4 * y / height, 0.5 + 0.3 * x / width,
                      0.9 - 0.5 * y / height], axis=-1)
    image[y > 0.65 * height] = (0.25, 0.35, 0.15)
    disc = (x - 0.3 * width) ** 2 + (y - 0.35 * height) ** 2 < (0.15 * height) ** 2
    image[disc] = (0.95, 0.9, 0.4)
    return image


def make_style(width: int = 72, height: int = 72) -> np.ndarray:
    """A 'painting': strongly coloured diagonal strokes, very unlike the content."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = np.sin((x + y) / 3.0) * 0.5 + 0.5
    swirl = np.cos((x - y) / 5.0) * 0.5 + 0.5
    return np.stack([waves, 0.2 + 0.3 * swirl, 1.0 - waves * swirl], axis=-1).astype(np.float32)


def save_png(array: np.ndarray, path) -> str:
    Image.fromarray(np.floor(np.clip(np.asarray(array, np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def content_array() -> np.ndarray:
    return make_content()


@pytest.fixture
def style_array() -> np.ndarray:
    return make_style()


@pytest.fixture
def image_files(tmp_path, content_array, style_array):
    return save_png(content_array, tmp_path / "content.png"), save_png(style_array, tmp_path / "style.png")


def make_stage(config, content, style):
    """A StageRun (objective, image variable, optimiser) for `config` on arrays, as a run's
    single scale would have; the image starts at config.init. `style`: an array, or Styles."""
    from tfstyle.api import extractor_for, stage_run
    from tfstyle.schedule import initial_image
    from tfstyle.style import Style

    styles = [Style(style)] if isinstance(style, np.ndarray) else style
    return stage_run(config, extractor_for(config), content, styles,
                     initial_image(config.init, content, config.seed))


def run_steps(stage_run, steps, save=lambda image, step: None, **settings):
    """tfstyle.loop.optimize over `steps` steps of one scale."""
    from tfstyle.loop import optimize
    from tfstyle.schedule import Stage

    _, height, width, _ = stage_run.optimizer.image.shape
    return optimize([Stage(1, (width, height), 0, steps)], lambda stage, picture: stage_run,
                    save, **settings)


def poison_from(stage_run, bad_call, poisoned=None):
    """Make the stage's costs NaN from the `bad_call`-th evaluation on (a step, for Adam), as an
    activation overflowing would: the costs named in `poisoned` (default: all of them)."""
    import tensorflow as tf

    from tfstyle.objective import Objective

    objective = stage_run.optimizer.objective

    class Poisoned:
        calls = tf.Variable(0)
        value_and_gradient = Objective.value_and_gradient  # through the poisoned costs()

        def costs(self, image):
            costs = objective.costs(image)
            self.calls.assign_add(1)
            poison = tf.where(self.calls >= bad_call, np.nan, 0.0)
            return {name: value + poison if poisoned is None or name in poisoned else value
                    for name, value in costs.items()}

    stage_run.optimizer.objective = Poisoned()  # before the first step traces the objective
    return stage_run


# The threads TensorFlow gives a step in this process: a Ray task claiming as many CPUs gets as
# many, and so sums in the same order (fewer threads would round differently).
CPUS = len(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def local_ray():
    """A real Ray cluster on this machine (Ray comes with the dev extra)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=max(2, CPUS), include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    yield ray
    ray.shutdown()


def read_events(directory):
    """Every event of a TensorBoard run directory, as TensorBoard itself reads them."""
    from tensorboard.backend.event_processing import event_accumulator
    accumulator = event_accumulator.EventAccumulator(
        str(directory), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    return accumulator
