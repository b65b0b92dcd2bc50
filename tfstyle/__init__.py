"""tfstyle: Gatys et al.'s neural style transfer in TensorFlow/Keras, Coursera formulation.

    import tfstyle
    picture = tfstyle.stylize("photo.jpg", "sample:starry_night", steps=200)
    picture.save("photo_starry.png")
"""
from tfstyle.api import run_config, stylize
from tfstyle.config import PRESETS, Config, make_config
from tfstyle.errors import UserError

__version__ = "0.1.0"
__all__ = ["Config", "PRESETS", "UserError", "make_config", "run_config", "stylize", "__version__"]
