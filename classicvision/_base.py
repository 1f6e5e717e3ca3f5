"""Transitional alias of :mod:`classicvision.base` (the public module).

Only ``classicvision/augment.py`` still imports this name; remove this file
together with that import. Nothing else in the repository uses it.
"""

from .base import *  # noqa: F401,F403
from .base import __all__  # noqa: F401
