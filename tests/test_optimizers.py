"""The optimisers behind one interface: L-BFGS (SciPy's L-BFGS-B) and Adam."""
import numpy as np
import pytest

from conftest import make_stage, poison_from, run_steps
from tfstyle.config import make_config
from tfstyle.loop import NonFiniteCost
from tfstyle.optimizers import LBFGS, NonFiniteCosts
from tolerances import assert_chain_close, vgg19_step_path

LAYERS = "block1_conv1=0.5,block2_conv1=0.3,block3_conv1=0.2"


@pytest.fixture
def batch(content_array, style_array):
    return content_array[None, :48, :64], style_array[None, :48, :48]


def config_for(optimizer, **settings):
    return make_config(style_layers=LAYERS, content_layer="block3_conv2", scales=1,
                       optimizer=optimizer, init="noise", **settings)


def test_lbfgs_reaches_a_lower_cost_than_adam_in_the_same_steps(batch):
    """The paper's optimiser gets further in the same steps (scripts/convergence.py measures
    by how much on real images)."""
    results = {name: run_steps(make_stage(config_for(name), *batch), 25)
               for name in ("lbfgs", "adam")}
    lbfgs, adam = (results[name].history for name in ("lbfgs", "adam"))
    assert len(lbfgs) == len(adam) == 25
    assert lbfgs[-1]["total"] < 0.85 * adam[-1]["total"], (lbfgs[-1], adam[-1])
    assert lbfgs[-1]["total"] < 0.3 * lbfgs[0]["total"]


def test_lbfgs_steps_report_the_costs_of_the_image_they_leave(batch):
    config = config_for("lbfgs")
    stage = make_stage(config, *batch)
    seen = []
    stage.optimizer.run(0, 8, lambda step, costs: seen.append((step, costs)) or False)
    assert [step for step, _ in seen] == list(range(1, 9))
    image = stage.optimizer.image.numpy()
    assert image.min() >= 0.0 and image.max() <= 1.0  # the box is L-BFGS-B's bounds
    assert stage.optimizer.evaluations >= 8
    # The step's costs are those of the image it accepted (compiled there, eager here).
    again = {name: float(value) for name, value in stage.optimizer.objective.costs(image).items()}
    path = vgg19_step_path(*config.layers, pixels=48 * 64)
    for name, value in seen[-1][1].items():
        assert_chain_close(value, again[name], path)


def test_lbfgs_stops_when_asked(batch):
    stage = make_stage(config_for("lbfgs"), *batch)
    steps = []
    stage.optimizer.run(0, 50, lambda step, costs: steps.append(step) or step == 3)
    assert steps == [1, 2, 3]


def test_lbfgs_restarts_at_checkpoints_and_ends_where_a_run_in_pieces_does(batch):
    """With checkpoints every 3 steps, L-BFGS starts afresh at steps 3 and 6 (SciPy keeps its
    memory to itself), so 7 steps at once equal 3 + 3 + 1 steps from the image each time."""
    config = config_for("lbfgs", checkpoint_every=3)
    whole = make_stage(config, *batch)
    whole.optimizer.run(0, 7, lambda step, costs: False)
    pieces = make_stage(config, *batch)
    for first, last in ((0, 3), (3, 6), (6, 7)):
        pieces.optimizer.run(first, last, lambda step, costs: False)
    np.testing.assert_array_equal(whole.optimizer.image.numpy(), pieces.optimizer.image.numpy())
    uninterrupted = make_stage(config.replace(checkpoint_every=0), *batch)
    uninterrupted.optimizer.run(0, 7, lambda step, costs: False)
    assert not np.array_equal(whole.optimizer.image.numpy(), uninterrupted.optimizer.image.numpy())


def test_lbfgs_nan_keeps_the_last_accepted_image(batch):
    config = config_for("lbfgs")
    good = make_stage(config, *batch)
    good.optimizer.run(0, 2, lambda step, costs: False)
    evaluations = good.optimizer.evaluations
    broken = poison_from(make_stage(config, *batch), evaluations + 1,
                         poisoned=("total", "style", "style/block2_conv1"))
    saved = []
    with pytest.raises(NonFiniteCost, match="'style/block2_conv1' became nan at step 3; stopped "
                                            "and kept the image of step 2"):
        run_steps(broken, 10, lambda image, step: saved.append((step, image)))
    assert [step for step, _ in saved] == [2]
    assert np.isfinite(saved[0][1]).all()
    path = vgg19_step_path(*config.layers, pixels=48 * 64)
    assert_chain_close(saved[0][1], good.optimizer.image.numpy(), path * evaluations)


def test_lbfgs_raises_non_finite_costs_from_an_evaluation(batch):
    stage = poison_from(make_stage(config_for("lbfgs"), *batch), 1)
    start = stage.optimizer.image.numpy()
    with pytest.raises(NonFiniteCosts):
        stage.optimizer.run(0, 5, lambda step, costs: False)
    np.testing.assert_array_equal(stage.optimizer.image.numpy(), start)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_ctrl_c_stops_cleanly_and_still_saves(batch, optimizer):
    stage = make_stage(config_for(optimizer), *batch)
    saved = []

    def interrupt_at_three(iterate):
        if iterate.step == 3:
            raise KeyboardInterrupt

    result = run_steps(stage, 50, lambda image, step: saved.append((step, image.copy())),
                       callbacks=[interrupt_at_three])
    assert result.interrupted and result.steps == 3 and len(result.history) == 3
    assert [step for step, _ in saved] == [3]
    np.testing.assert_array_equal(saved[0][1], stage.optimizer.image.numpy())


def test_lbfgs_optimises_a_batch_as_one_problem(content_array, style_array):
    contents = np.stack([content_array[:48, :64], content_array[:48, :64][:, ::-1]])
    stage = make_stage(config_for("lbfgs"), contents, style_array[None, :48, :48])
    result = run_steps(stage, 10)
    assert result.image.shape == (2, 48, 64, 3)
    assert isinstance(stage.optimizer, LBFGS) and stage.optimizer.learning_rate is None
    assert result.history[-1]["total"] < 0.5 * result.history[0]["total"]
