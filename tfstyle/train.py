"""Train a feed-forward style network on a folder of photos (Johnson et al. 2016).

Usage: python -m tfstyle.train --content_dir=photos/ --style=painting.jpg --model_dir=DIR
           [--steps=N --batch_size=B --crop_size=S --learning_rate=L --width=W ...]

The costs are the optimisation path's (--alpha, --beta, --tv_weight, --style_layers,
--content_layers, ... with the same defaults as `python -m tfstyle.run`). DIR receives
checkpoints/ (every --checkpoint_every steps, and on Ctrl-C or SIGTERM), logs/ (TensorBoard:
every cost by name; the network's output on the held-out photos every --sample_every
steps), train.json (the settings) and model.keras, the trained network in Keras' own format,
which `python -m tfstyle.run --model=DIR` and tfstyle.load_model read. --resume continues
the run in DIR from its latest checkpoint, with the batches it would have seen.
"""
# Flags are generated from TrainConfig and from the cost settings of tfstyle.config.Config:
# the dataclasses are the only place where settings and defaults are written down.
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Sequence

from absl import flags

from tfstyle.config import Config, make_config
from tfstyle.errors import UserError, stop_on_sigterm, stopped_before_start
from tfstyle.run import HELP_FLAGS, call_cli, fail, internal_error

METHODS = ("johnson", "conditional", "texture", "adain")
# The settings of a run's objective that also set a network's training objective.
COST_SETTINGS = ("alpha", "beta", "tv_weight", "style_layers", "content_layers",
                 "style_layer_weight_exp", "normalize_costs", "style_scale", "weights",
                 "preprocess", "pooling", "precision", "jit")
MAX_CROP = 1024


def _setting(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; `objective` holds its costs (a run Config)."""

    method: str = _setting("johnson", "The network: 'johnson' (Johnson et al. 2016 with instance "
                           "normalisation) for one style, 'conditional' (Dumoulin et al. 2017: "
                           "conditional instance normalisation) for several in one network, "
                           "'texture' (Ulyanov et al. 2016: noise in, the style's texture out, "
                           "no photos), 'adain' (Huang & Belongie 2017: a decoder of VGG19's "
                           "block4_conv1 that paints any style given at run time, trained on "
                           "a folder of paintings).")
    content_dir: str = _setting("", "A folder (or glob) of photos to train on.")
    style: str = _setting("", "The style image (a path or sample:NAME); with "
                          "--method=conditional, several, comma-separated; with "
                          "--method=adain, a folder (or glob) of paintings.")
    model_dir: str = _setting("", "Where the checkpoints, logs and the trained model go.")
    steps: int = _setting(2000, "Training steps (batches).")
    batch_size: int = _setting(4, "Photos per step.")
    crop_size: int = _setting(256, "Side of the square crops the network trains on.")
    learning_rate: float = _setting(1e-3, "Adam's learning rate (an AdaIN decoder, which has no "
                                    "normalisation, wants 1e-4 to 2e-4); a --resume may lower "
                                    "it.")
    width: int = _setting(32, "Filters of the network's first layer (32 in the paper; 8 or 16 "
                          "train far faster on a CPU); of an AdaIN decoder's last (64 in the "
                          "paper).")
    residual_blocks: int = _setting(5, "Residual blocks of the network (5 in the paper).")
    extend: str = _setting("", "A network trained with --method=conditional (or johnson) to add "
                           "the --style image(s) to (its --model_dir, model.keras or "
                           "sample:NAME): only the new styles' instance normalisation "
                           "parameters are trained; the network's --width and depth are its "
                           "own.")
    levels: int = _setting(5, "Noise scales of a texture network, each half the one before (5 "
                           "in the paper); --crop_size must divide by 2^(levels - 1).")
    held_out: int = _setting(2, "Photos of --content_dir kept out of training, shown in "
                             "TensorBoard (with --method=adain, as many paintings too).")
    checkpoint_every: int = _setting(200, "Steps between checkpoints.")
    log_every: int = _setting(10, "Steps between cost scalars in TensorBoard.")
    sample_every: int = _setting(100, "Steps between the held-out photos' outputs in "
                                 "TensorBoard.")
    resume: bool = _setting(False, "Continue the run in --model_dir from its last checkpoint.")
    seed: int = _setting(0, "Seed of the network's initial weights and of the crops.")
    quiet: bool = _setting(False, "No progress bar.")
    objective: Config = dataclasses.field(default_factory=make_config,
                                          metadata={"help": "The costs."})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                  if field.name != "objective"}
        costs = self.objective.to_dict()
        return {**values, **{name: costs[name] for name in COST_SETTINGS}}


def make_train_config(**settings: Any) -> TrainConfig:
    """A TrainConfig from settings by name, the cost settings among them; checked."""
    unknown = set(settings) - {field.name for field in dataclasses.fields(TrainConfig)} - set(
        COST_SETTINGS)
    if unknown:
        raise UserError(f"Unknown training setting(s): {', '.join(sorted(unknown))}.")
    costs = {name: settings.pop(name) for name in COST_SETTINGS if name in settings}
    config = TrainConfig(**settings, objective=make_config(**costs))
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    if config.method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, not '{config.method}'.")
    for name in ("steps", "batch_size", "width", "checkpoint_every", "log_every",
                 "sample_every"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name} must be at least 1, not {getattr(config, name)}.")
    if config.seed < 0:
        raise UserError(f"--seed must be 0 or more, not {config.seed}.")
    if config.crop_size > MAX_CROP:
        raise UserError(f"--crop_size={config.crop_size} is larger than {MAX_CROP}; the "
                        "network learns from crops, not whole photos.")
    if config.residual_blocks < 0 or config.held_out < 0:
        raise UserError("--residual_blocks and --held_out cannot be negative.")
    multiple = 8 if config.method == "adain" else 4  # the sides the network paints
    if config.crop_size < 32 or config.crop_size % multiple:
        raise UserError(f"--crop_size must be a multiple of {multiple} of at least 32 (VGG19's "
                        f"smallest input), not {config.crop_size}.")
    if config.method == "texture" and not 1 <= config.levels <= 8:
        raise UserError(f"--levels must be from 1 to 8, not {config.levels}.")
    if config.method == "texture" and config.crop_size % 2 ** (config.levels - 1):
        raise UserError(f"--crop_size={config.crop_size} does not divide by "
                        f"2^(levels - 1) = {2 ** (config.levels - 1)}; a texture network of "
                        f"--levels={config.levels} needs it to.")
    if config.method == "adain":  # what its costs do not read
        defaults = make_config()
        for name, meaning in (("content_layers", "its content cost is at block4_conv1, the "
                                                 "AdaIN target"),
                              ("style_scale", "the paintings are cropped as the photos are")):
            if getattr(config.objective, name) != getattr(defaults, name):
                raise UserError(f"--{name} has no part in --method=adain: {meaning}.")
    if config.extend and config.method != "conditional":
        raise UserError("--extend adds styles to a conditional network: use it with "
                        "--method=conditional.")
    if not config.learning_rate > 0:
        raise UserError(f"--learning_rate must be positive, not {config.learning_rate}.")


# --- the command line ------------------------------------------------------------------

FLAGS = flags.FlagValues()


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    defaults = TrainConfig().to_dict()
    helps = {field.name: field.metadata["help"] for field in dataclasses.fields(TrainConfig)}
    helps.update({field.name: field.metadata["help"] for field in dataclasses.fields(Config)
                  if field.name in COST_SETTINGS})
    for name, default in defaults.items():
        define = (flags.DEFINE_boolean if isinstance(default, bool) else
                  flags.DEFINE_integer if isinstance(default, int) else
                  flags.DEFINE_float if isinstance(default, float) else flags.DEFINE_string)
        define(name, default, helps[name], flag_values=flag_values)


define_flags()


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> TrainConfig:
    return make_train_config(**{name: flag_values[name].value for name in
                                TrainConfig().to_dict() if flag_values[name].present})


def main(argv: Sequence[str]) -> int:
    from tfstyle import training
    if len(argv) > 1:
        return fail(f"Unexpected argument(s) {' '.join(argv[1:])}; every setting is a --flag.")
    try:
        result = training.train(config_from_flags())
    except UserError as error:
        return fail(str(error))
    except Exception as error:
        return internal_error(error)
    if result.stopped_by:
        print(f"tfstyle: training stopped by {result.stopped_by} at step {result.step}; the "
              f"network so far is in {result.model}. To continue, run the same command with "
              "--resume.", file=sys.stderr)
        return 130 if result.stopped_by == "SIGINT" else 143
    print(f"Trained {result.model}: {result.step} steps in {result.seconds:.0f} s.")
    return 0


def parse(argv: Sequence[str]) -> list[str]:
    try:
        return FLAGS(list(argv))
    except flags.Error as error:
        sys.exit(fail(f"{str(error).rstrip('.')}."))


def cli(argv: Sequence[str]) -> int:
    """What `python -m tfstyle.train ARGS` does, in-process."""
    if any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:]):
        print(f"{__doc__}\n{FLAGS.get_help()}")
        return 0
    return call_cli(argv, FLAGS, parse, main)


def entry_point() -> None:
    stop_on_sigterm()
    try:
        sys.exit(cli(sys.argv))
    except KeyboardInterrupt as interrupt:
        sys.exit(stopped_before_start(interrupt))


if __name__ == "__main__":
    entry_point()
