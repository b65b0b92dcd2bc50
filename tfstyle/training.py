"""Training a feed-forward style network (Johnson et al. 2016) with the costs of the
optimisation path.

For a batch of photos x, the network's output y = f(x) is scored by the same Objective that
scores an optimised image, with x as its content:

    J(f) = Σ_batch α·J_content(x, f(x)) + β·J_style(S, f(x)) + tv_weight·J_tv(f(x))

and Adam follows the gradient of J with respect to the network's weights instead of the
pixels. Photos come as random square crops of --crop_size pixels, each of a random side
between that and the photo's shorter side (so details are seen at several scales), flipped
at random.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from tfstyle import adain, api, fast, images, jobs, monitor, networks, schedule
from tfstyle.config import Config, split_paths
from tfstyle.costs import channel_moments
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor
from tfstyle.loop import Iterate, StopRequests
from tfstyle.objective import Costs, Objective
from tfstyle.style import Style

SETTINGS_FILE = "train.json"  # what a resumed run must share
LEFT_OUT_FILE = "left_out.json"  # the unreadable photos found up to the latest checkpoint

if TYPE_CHECKING:
    from tfstyle.train import TrainConfig


def random_crop(photo: Image.Image, crop: int, rng: np.random.Generator) -> np.ndarray:
    """A square of a random side in [crop, the photo's shorter side] at a random place, resized
    to crop×crop and flipped left-right half of the time: float32 [crop, crop, 3] in [0, 1]."""
    side = int(rng.integers(min(crop, min(photo.size)), min(photo.size) + 1))
    left = int(rng.integers(0, photo.width - side + 1))
    top = int(rng.integers(0, photo.height - side + 1))
    square = photo.crop((left, top, left + side, top + side)).resize((crop, crop),
                                                                     Image.BILINEAR)
    if rng.random() < 0.5:
        square = square.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(square.convert("RGB"), np.float32) / 255.0


def photo_batches(paths: Sequence[str], crop: int, batch: int, seed: int,
                  start: int = 0, kind: str = "photos",
                  unreadable: Optional[set[str]] = None) -> Iterator[np.ndarray]:
    """Batches [batch, crop, crop, 3] of random crops of the photos (or paintings: `kind`) at
    `paths`, one after another in a shuffled order reshuffled at each pass; the same `seed`
    gives the same batches, and `start` skips that many batches (a resumed run sees what it
    would have). Photos that cannot be read are left out and added to `unreadable`; a resumed
    run passes those its first piece found, as the batches it skips are not read."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    unreadable = set() if unreadable is None else unreadable
    number = 0
    while True:
        crops = []
        while len(crops) < batch:
            if not order:
                order = list(rng.permutation(len(paths)))
            path = paths[order.pop()]
            if path in unreadable:
                continue
            crop_rng = np.random.default_rng([seed, number, len(crops)])
            if number < start:
                crops.append(None)
                continue
            try:
                crops.append(random_crop(images.load_image(path), crop, crop_rng))
            except UserError as error:  # one bad photo of thousands should not stop a run
                unreadable.add(path)
                logging.warning("Left out of training: %s", error)
                if len(unreadable) == len(paths):
                    raise UserError(f"None of the {kind} can be read; the last: "
                                    f"{error}") from None
        if number >= start:
            yield np.stack(crops)
        number += 1


def noise_batches(config: "TrainConfig", start: int = 0) -> Iterator[np.ndarray]:
    """A texture network's inputs, batch `start` onwards: each drawn from (seed, its number)."""
    number = start
    while True:
        yield networks.texture_noise(config.batch_size, config.crop_size, config.crop_size,
                                     config.levels, [config.seed, number])
        number += 1


class Descent:
    """Adam on a network's trainable weights, one compiled step (`_step`) at a time."""

    conditional = texture = False

    def __init__(self, config: Config, network: keras.Model, learning_rate: float) -> None:
        self.network = network
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(network.trainable_variables)
        self._compiled = tf.function(self._step, jit_compile=config.jit)

    def _step(self, *inputs: tf.Tensor) -> Costs:
        raise NotImplementedError

    def descend(self, tape: tf.GradientTape, costs: Costs) -> Costs:
        """One Adam step down the gradient of costs['total'] (taken on `tape`)."""
        variables = self.network.trainable_variables
        gradients = tape.gradient(costs["total"], variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return costs

    def trackables(self) -> dict[str, object]:
        return {"network": self.network, "optimizer": self.optimizer}


class Trainer(Descent):
    """Adam on `network`'s weights against the objective of `config` (its content layers,
    style layers, α, β, TV) for crops of `crop` pixels in batches of `batch`, towards each of
    `styles`: one style per batch (Dumoulin et al.), the network told which by a one-hot mix
    when it is conditional. (A Python int style: one compiled step per style.)"""

    def __init__(self, config: Config, network: keras.Model, extractor: FeatureExtractor,
                 styles: Sequence[Style], crop: int, batch: int,
                 learning_rate: float = 1e-3) -> None:
        super().__init__(config, network, learning_rate)
        self.conditional = len(network.inputs) == 2
        # The styles trained follow those of an --extend-ed network.
        self.first_style = int(network.inputs[1].shape[-1]) - len(styles) if self.conditional else 0
        # A texture network sees noise and has no content to keep: the style costs alone.
        self.texture = bool(networks.texture_levels(network))
        placeholder = None if self.texture else np.zeros((batch, crop, crop, 3), np.float32)
        self.objectives = [Objective.of_images(config, extractor, placeholder, [style],
                                               (crop, crop)) for style in styles]

    def step(self, inputs: np.ndarray, style: int = 0) -> Costs:
        """One step on a batch of photos (or noise) towards style number `style`."""
        return self._compiled(tf.constant(inputs), style)

    def outputs(self, photos: tf.Tensor, style: int) -> tf.Tensor:
        if not self.conditional:
            return self.network(photos, training=True)
        return self.network([photos, one_hot(self.network, photos.shape[0],
                                             self.first_style + style)], training=True)

    def _step(self, photos: tf.Tensor, style: int) -> Costs:
        objective = self.objectives[style]
        if not objective.retarget(None if self.texture else photos, None):
            raise ValueError(f"The trainer is for batches of {objective.size}, not "
                             f"{photos.shape}.")
        with tf.GradientTape() as tape:
            costs = objective.costs(self.outputs(photos, style))
        return self.descend(tape, costs)


class AdaINTrainer(Descent):
    """Adam on an AdaIN decoder's weights (adain.py). Each step encodes a batch of photos and
    one of style images (photo i with style image i), decodes their AdaIN targets and scores
    the pictures by adain.training_costs."""

    def __init__(self, config: Config, network: keras.Model, learning_rate: float = 1e-3
                 ) -> None:
        super().__init__(config, network, learning_rate)
        self.config = config
        self.extractor = adain.encoder(config, config.layer_names)

    def step(self, batch: tuple[np.ndarray, np.ndarray], style: int = 0) -> Costs:
        """One step on (photos, style images), two batches of the same size."""
        photos, paintings = batch
        return self._compiled(tf.constant(photos), tf.constant(paintings))

    def _step(self, photos: tf.Tensor, paintings: tf.Tensor) -> Costs:
        content = self.extractor(photos)[adain.ENCODER_LAYER]
        style_features = self.extractor(paintings)
        target = adain.adaptive_instance_normalization(
            content, *channel_moments(style_features[adain.ENCODER_LAYER]))
        with tf.GradientTape() as tape:
            costs = adain.training_costs(self.config, self.extractor, target, style_features,
                                         self.network(target, training=True))
        return self.descend(tape, costs)

    def samples(self, photos: np.ndarray, paintings: np.ndarray) -> np.ndarray:
        """Photo i painted in the style of painting i (the held-out pairs TensorBoard shows)."""
        return adain.stylise(self.network, self.extractor, photos, [Style(paintings)])


def one_hot(network: keras.Model, batch: int, style: int) -> tf.Tensor:
    """A conditional network's style weights [batch, its styles] that select style `style`."""
    return tf.one_hot([style] * batch, int(network.inputs[1].shape[-1]))


def extended_network(config: "TrainConfig", new_styles: int) -> keras.Model:
    """The conditional network --extend names, with `new_styles` more styles whose (γ, β)
    start at the mean of its own and alone are trained: every other weight is frozen, and a
    batch of a new style gives the old styles' rows a zero gradient, which Adam leaves as
    they are."""
    base = _extended(config)
    old = base.network
    network = networks.johnson_network(*_size(old), base.styles + new_styles)
    names = {layer.name for layer in old.layers}
    for layer in network.layers:
        if layer.name not in names:  # the style weights' input, new to a one-style network
            continue
        weights = old.get_layer(layer.name).get_weights()
        if isinstance(layer, networks.InstanceNormalization):
            weights = [np.concatenate([rows, np.repeat(rows.mean(0, keepdims=True), new_styles,
                                                       0)]) for rows in weights]
        layer.set_weights(weights)
        layer.trainable = isinstance(layer, networks.InstanceNormalization)
    return network


def _extended(config: "TrainConfig") -> fast.FastModel:
    """The network --extend names, checked to be one that styles can be added to."""
    base = fast.load_model(config.extend, "--extend")
    if base.levels or base.arbitrary:
        raise UserError(f"--extend '{config.extend}' is a "
                        f"{'texture' if base.levels else 'AdaIN'} network; only a Johnson or "
                        "conditional one gets styles added.")
    return base


def _size(network: keras.Model) -> tuple[int, int]:
    """A Johnson network's width and residual blocks."""
    return (network.get_layer("c1_conv").filters,
            sum(layer.name.endswith("_add") for layer in network.layers))


def costs_of(config: Config, network: keras.Model, extractor: FeatureExtractor,
             styles: Sequence[Style], photos: np.ndarray) -> dict[str, float]:
    """The objective's costs of the network's output for `photos` (no training)."""
    size = (photos.shape[2], photos.shape[1])
    objective = Objective.of_images(config, extractor, photos, styles, size)
    return {name: float(value) for name, value in
            objective.costs(network(photos, training=False)).items()}


@dataclasses.dataclass
class Training:
    model: str  # the saved network
    step: int
    seconds: float
    stopped_by: str = ""
    costs: dict[str, float] = dataclasses.field(default_factory=dict)  # the last step's


def _photos(config: "TrainConfig") -> tuple[list[str], list[str]]:
    """(training photos, held-out photos) of --content_dir: the first --held_out in name
    order are held out. A texture network has none."""
    if config.method == "texture":
        if config.content_dir:
            raise UserError("--method=texture learns from the style alone, from noise; leave "
                            "out --content_dir.")
        return [], []
    if not config.content_dir:
        raise UserError("Say which photos to train on with --content_dir=DIR.")
    return _split(config, jobs.find_inputs(config.content_dir), "--content_dir",
                  config.content_dir)


def _paintings(config: "TrainConfig") -> tuple[list[str], list[str]]:
    """(style images to train on, held-out ones) of an AdaIN run's --style folder or glob."""
    if not config.style:
        raise UserError("Say which style images to learn from with --style=DIR (a folder or "
                        "glob of paintings).")
    return _split(config, jobs.find_inputs(config.style), "--style", config.style)


def _split(config: "TrainConfig", paths: Sequence[str], flag: str, setting: str
           ) -> tuple[list[str], list[str]]:
    """(the images to train on, the first --held_out in name order kept out) of the images
    `paths` that `flag`=`setting` names."""
    if len(paths) <= config.held_out:
        raise UserError(f"{flag} '{setting}' has {len(paths)} image(s); training needs more "
                        f"than the {config.held_out} --held_out.")
    return list(paths[config.held_out:]), list(paths[:config.held_out])


def _has_checkpoint(directory: Path) -> bool:
    return (directory / "checkpoints" / "checkpoint").is_file()


def _check_model_dir(config: "TrainConfig") -> Path:
    """--model_dir, checked before any work: refused when it holds another run's work (a
    folder that holds only the settings of a run that never reached a checkpoint holds none,
    and is started afresh), or with --resume when it has no checkpoint of this run."""
    if not config.model_dir:
        raise UserError("Say where the trained network goes with --model_dir=DIR.")
    directory = Path(config.model_dir)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--model_dir '{directory}' is a file, not a directory.")
    if config.resume:
        if not _has_checkpoint(directory):
            raise UserError(f"--model_dir '{directory}' has no training checkpoint to resume; "
                            "run without --resume to start.")
        try:
            earlier = json.loads((directory / SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            earlier = None
        free = {"steps": None, "learning_rate": None}  # a piece may go further, or slower
        if not isinstance(earlier, dict) or {**earlier, **free} != {**_settings(config), **free}:
            raise UserError(f"--model_dir '{directory}' holds a training run with other "
                            "settings; --resume continues only the same run (with as many "
                            "--steps or more, and any --learning_rate).")
    elif directory.is_dir() and (_has_checkpoint(directory) or any(
            path.name not in (SETTINGS_FILE, "checkpoints", "logs")
            for path in directory.iterdir())):
        raise UserError(f"--model_dir '{directory}' is not empty; choose another, or pass "
                        "--resume to continue the training run in it.")
    return directory


def _write_settings(config: "TrainConfig", directory: Path) -> None:
    try:
        (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
        (directory / SETTINGS_FILE).write_text(json.dumps(_settings(config), indent=2))
    except OSError as error:
        raise UserError(f"Cannot write to --model_dir '{directory}' "
                        f"({error.strerror or error}).") from None


def _settings(config: "TrainConfig") -> dict:
    """What a resumed run must share: every setting but --resume, --quiet and the logging,
    the paths as absolute ones, and only the settings of its method's network."""
    values = config.to_dict()
    unused = {"texture": ("residual_blocks",), "adain": ("levels", "residual_blocks")}
    for name in ("resume", "quiet", "log_every", "sample_every", "checkpoint_every",
                 *unused.get(config.method, ("levels",))):
        values.pop(name)
    values["content_dir"] = os.path.abspath(config.content_dir) if config.content_dir else ""
    values["style"] = ",".join(name if name.startswith("sample:") else os.path.abspath(name)
                               for name in split_paths(config.style))
    values["model_dir"] = os.path.abspath(config.model_dir)
    if config.extend:  # the network's size is the extended one's, as it is when recorded
        values["extend"] = (config.extend if config.extend.startswith("sample:")
                            else os.path.abspath(config.extend))
        base = _extended(config)
        values["width"], values["residual_blocks"] = _size(base.network)
        values["extended_styles"] = base.styles
    else:  # as runs recorded before there was --extend, which --resume continues
        values.pop("extend")
    return json.loads(json.dumps(values))


def _read_left_out(directory: Path) -> set[str]:
    """The unreadable photos a run in `directory` had found by its latest checkpoint."""
    try:
        return set(json.loads((directory / LEFT_OUT_FILE).read_text()))
    except (OSError, ValueError, TypeError):  # none found (no file), or an older run's folder
        return set()


def _write_left_out(directory: Path, unreadable: set[str]) -> None:
    if not unreadable:
        return
    try:
        _write_text(directory / LEFT_OUT_FILE, json.dumps(sorted(unreadable)))
    except OSError as error:  # the checkpoint is written; only a resume's batches may differ
        logging.warning("Cannot write '%s' (%s): a --resume may draw other batches than the "
                        "whole run would.", directory / LEFT_OUT_FILE, error.strerror or error)


def _write_text(path: Path, text: str) -> None:
    """Written beside, then moved in place: a crash leaves the previous file whole."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def _save_model(network: keras.Model, path: Path) -> None:
    """Written beside, then moved in place: a crash leaves the previous model whole."""
    temp = path.with_name(f".{path.stem}-{os.getpid()}.keras")
    try:
        network.save(temp)
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise UserError(f"Cannot write the model '{path}' ({error.strerror or error}).") from None


class TrainingLog(monitor.TensorBoardLog):
    """The costs every --log_every steps, and the network's output on the held-out photos
    every --sample_every steps, in DIR/logs."""

    def __init__(self, config: "TrainConfig", held_out: np.ndarray,
                 styles: Sequence[np.ndarray]) -> None:
        objective = config.objective.replace(
            logdir=os.path.join(config.model_dir, "logs"), log_every=config.log_every,
            image_every=config.sample_every, run_name="train-resumed" if config.resume
            else "train")
        stage = schedule.Stage(1, (config.crop_size, config.crop_size), 0, config.steps)
        super().__init__(objective, [stage], f"VGG19 weights: {config.objective.weights}",
                         held_out if len(held_out) else None, styles)


def _style_arrays(config: "TrainConfig") -> list[np.ndarray]:
    """The style images [1, h, w, 3] at the crops' size (times --style_scale), checked."""
    names = split_paths(config.style)
    if not names:
        raise UserError("Say which style to learn with --style=IMAGE.")
    if len(names) > 1 and config.method != "conditional":
        raise UserError(f"--method={config.method} learns one style; --method=conditional "
                        f"learns the {len(names)} given to --style.")
    crop = config.crop_size
    arrays = []
    for name in names:
        image = images.load_image(name)
        size = schedule.style_size_at(config.objective, image.size, (crop, crop))
        if min(size) < images.MIN_SIDE:
            raise UserError(f"The style image '{name}' would be {size[0]}x{size[1]} pixels for "
                            f"crops of {crop} with --style_scale={config.objective.style_scale}, "
                            f"and VGG19 needs at least {images.MIN_SIDE} on each side; use a "
                            "larger --crop_size or --style_scale.")
        arrays.append(images.to_array(image, size)[None])
    return arrays


def train(config: "TrainConfig") -> Training:
    """Train `config.method`'s network; see tfstyle/train.py."""
    paths, held_out_paths = _photos(config)
    arbitrary = config.method == "adain"
    painting_paths, held_out_paintings = _paintings(config) if arbitrary else ([], [])
    styles = ([images.to_array(images.load_image(path), (config.crop_size,) * 2)[None]
               for path in held_out_paintings] if arbitrary else _style_arrays(config))
    directory = _check_model_dir(config)
    crop = config.crop_size
    keras.utils.set_random_seed(config.seed)
    if arbitrary:
        network = adain.decoder(config.width)
        trainer = AdaINTrainer(config.objective, network, config.learning_rate)
    else:
        network = (networks.texture_network(config.width, config.levels)
                   if config.method == "texture" else
                   extended_network(config, len(styles)) if config.extend else
                   networks.johnson_network(config.width, config.residual_blocks,
                                            len(styles) if config.method == "conditional" else 1))
        trainer = Trainer(config.objective, network, api.extractor_for(config.objective),
                          [Style(style) for style in styles], crop, config.batch_size,
                          config.learning_rate)
    step = tf.Variable(0, dtype=tf.int64, name="step")
    checkpoint = tf.train.Checkpoint(step=step, **trainer.trackables())
    manager = tf.train.CheckpointManager(checkpoint, str(directory / "checkpoints"), 2)
    unreadable: set[str] = set()
    if config.resume:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        trainer.optimizer.learning_rate = config.learning_rate  # not the checkpoint's
        unreadable = _read_left_out(directory)
    first = int(step.numpy())
    if first >= config.steps:
        raise UserError(f"The run in '{directory}' is at step {first} already; resume with "
                        f"more --steps than that to train it further.")
    held_out = (np.stack([images.to_array(images.load_image(path), (crop, crop))
                          for path in held_out_paths]) if held_out_paths
                else np.zeros((0, crop, crop, 3), np.float32))
    log = TrainingLog(config, held_out, styles)
    stages = [schedule.Stage(1, (crop, crop), 0, config.steps)]
    progress = None if config.quiet else monitor.Progress(stages)
    if trainer.texture:
        batches = noise_batches(config, start=first)
        held_out = networks.texture_noise(2, crop, crop, config.levels, [config.seed, 2 ** 31])
    else:
        batches = photo_batches(paths, crop, config.batch_size, config.seed, start=first,
                                unreadable=unreadable)
    if arbitrary:  # each photo with a crop of a painting, drawn in an order of their own
        batches = zip(batches, photo_batches(painting_paths, crop, config.batch_size,
                                             config.seed + 1, first, "paintings", unreadable))
    _write_settings(config, directory)
    start = time.perf_counter()
    costs: dict[str, float] = {}
    saved = first  # the step of the latest checkpoint
    stop = StopRequests()

    def save(number: int) -> None:
        manager.save(checkpoint_number=number)
        _write_left_out(directory, unreadable)

    def samples() -> np.ndarray:
        """The held-out photos through the network (in each style, if conditional)."""
        if not len(held_out):
            return np.zeros((1, crop, crop, 3), np.float32)
        if arbitrary:  # photo i in the style of held-out painting i (in turn)
            return trainer.samples(held_out, np.concatenate(
                [styles[number % len(styles)] for number in range(len(held_out))]))
        if not trainer.conditional:  # (a texture network's held-out input is fixed noise)
            return networks.apply_network(network, held_out).numpy()
        return np.concatenate([networks.apply_network(network, held_out, one_hot(
            network, 1, trainer.first_style + number)[0]).numpy()
            for number in range(len(styles))])

    try:
        with stop:
            for number in range(first + 1, config.steps + 1):
                costs = {name: float(value) for name, value in
                         trainer.step(next(batches), (number - 1) % max(1, len(styles))).items()}
                step.assign(number)
                iterate = Iterate(number, config.steps, 1, 1, (crop, crop), costs,
                                  config.learning_rate, samples)
                log(iterate)
                if progress:
                    progress(iterate)
                if not np.isfinite(costs["total"]):
                    kept = (f"the checkpoint of step {saved} is kept" if saved else
                            "no checkpoint had been written")
                    raise UserError(f"The training cost became {costs['total']} at step "
                                    f"{number}; a lower --learning_rate may help ({kept}).")
                if number % config.checkpoint_every == 0 or stop.signal_name:
                    save(number)
                    saved = number
                if stop.signal_name:
                    break
    except KeyboardInterrupt:  # a second Ctrl-C: the step is gone, the checkpoints stay
        stop.signal_name = stop.signal_name or "SIGINT"
    finally:
        if progress:
            progress.close()
        log.close()
    done = int(step.numpy())
    if done != saved:
        save(done)
    model = directory / fast.MODEL_FILE
    seconds = time.perf_counter() - start
    _save_model(network, model)
    _save_record(config, model, first, done, seconds, paths, held_out_paths, costs)
    return Training(str(model), done, seconds, stop.signal_name, costs)


def _save_record(config: "TrainConfig", model: Path, first: int, done: int, seconds: float,
                 paths: Sequence[str], held_out: Sequence[str], costs: dict[str, float]) -> None:
    """model.json beside the model: its settings, steps, wall time over every resumed piece,
    the learning rate from each piece's first step on ([[step, rate], ...]), photos and last
    costs (what the README records of a bundled network)."""
    record = model.with_suffix(".json")
    earlier, rates = 0.0, []
    if config.resume:
        try:
            before = json.loads(record.read_text())
            earlier = float(before["seconds"])
            rates = [[int(step), float(rate)] for step, rate in
                     before.get("learning_rates", [[0, before["learning_rate"]]])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    if not rates or rates[-1][1] != config.learning_rate:
        rates = [*rates, [first, config.learning_rate]]
    settings = _settings(config)
    if config.extend:  # the styles of the network written: the extended one's, then these
        base = _extended(config)
        settings["style"] = ",".join([base.style_names or ",".join(["?"] * base.styles),
                                      settings["style"]])
    text = json.dumps({**settings, "steps_done": done, "seconds": earlier + seconds,
                       "learning_rates": rates,
                       "training_photos": len(paths), "held_out_photos": list(held_out),
                       "last_costs": costs}, indent=1)
    try:
        _write_text(record, text)
    except OSError as error:
        raise UserError(f"Cannot write '{record}' ({error.strerror or error}); the model "
                        "itself is written.") from None
