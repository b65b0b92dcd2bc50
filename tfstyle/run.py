"""Paint a content image in the style of another (Gatys et al., Coursera formulation).

Usage: python -m tfstyle.run --content=photo.jpg --style=painting.jpg --output=out.png [flags]

Images may be files or the bundled samples sample:tubingen and sample:starry_night.
--preset=coursera reproduces the Coursera notebook; flags given explicitly override the
preset. --flagfile=FILE reads flags from a file, one per line.
"""
# One flag per field of tfstyle.config.Config, generated from it: the dataclass is the only
# place where settings and defaults are written down.
from __future__ import annotations

import dataclasses
import sys
from typing import Sequence

from absl import app, flags, logging

from tfstyle import api
from tfstyle.config import PRESETS, Config, format_layer_weights, make_config
from tfstyle.errors import UserError

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    defaults = Config()
    for field in dataclasses.fields(Config):
        default = getattr(defaults, field.name)
        help_text = field.metadata["help"]
        if field.name == "preset":
            coursera = ", ".join(f"{k}={v}" for k, v in PRESETS["coursera"].items()
                                 if k != "style_layers")
            help_text += f" The coursera preset sets {coursera}."
        if field.name == "style_layers":
            flags.DEFINE_string(field.name, format_layer_weights(default), help_text,
                                flag_values=flag_values)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(field.name, default, help_text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(field.name, default, help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(field.name, default, help_text, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> Config:
    """The preset named by --preset, with every flag given on the command line on top."""
    explicit = {field.name: flag_values[field.name].value for field in dataclasses.fields(Config)
                if flag_values[field.name].present and field.name != "preset"}
    return make_config(flag_values.preset, **explicit)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        config = config_from_flags()
        if not config.output:
            raise UserError("Say where to write the result with --output=FILE.png.")
        result = api.run_config(config)
    except UserError as error:
        print(f"tfstyle: error: {error}", file=sys.stderr)
        return 2
    final = result.history[-1] if result.history else {}
    logging.info("Wrote %s after %d steps in %.1f s (total %.4g, content %.4g, style %.4g).",
                 config.output, result.steps, result.seconds, final.get("total", float("nan")),
                 final.get("content", float("nan")), final.get("style", float("nan")))
    return 130 if result.interrupted else 0


define_flags()


def entry_point() -> None:
    app.run(main)


if __name__ == "__main__":
    entry_point()
