"""tfstyle: Gatys et al.'s neural style transfer in TensorFlow/Keras, Coursera formulation.

    import tfstyle
    picture = tfstyle.stylize("photo.jpg", "sample:starry_night")
    picture.save("photo_starry.png")
"""
import importlib
from typing import Any

__version__ = "0.2.0"

# The API is imported on first use, so that `python -m tfstyle.run` can set TensorFlow up
# (quietly) before anything imports it.
_API = {"stylize": "tfstyle.api", "run_config": "tfstyle.api", "run_many": "tfstyle.jobs",
        "Config": "tfstyle.config",
        "make_config": "tfstyle.config", "PRESETS": "tfstyle.config",
        "load_model": "tfstyle.fast", "train_network": "tfstyle.training",
        "make_train_config": "tfstyle.train",
        "UserError": "tfstyle.errors"}
__all__ = [*_API, "__version__"]


# tfstyle.train is the training command's module, so the API calls its function train_network.
_RENAMED = {"train_network": "train"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'tfstyle' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)


def command() -> None:
    """The installed `tfstyle` command: `python -m tfstyle.run`, with a Ctrl-C or SIGTERM
    while tfstyle.run imports TensorFlow also given one line."""
    from tfstyle.errors import stop_on_sigterm, stopped_before_start
    stop_on_sigterm()
    try:
        from tfstyle import run
    except KeyboardInterrupt as interrupt:
        raise SystemExit(stopped_before_start(interrupt)) from None
    run.entry_point()
