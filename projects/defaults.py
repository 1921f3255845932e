"""Defaults a front end shows before any service is loaded.

The command line builds its help from these without importing the database or model libraries, so
``python app.py`` answers at once; the services import them from here too, so there is one value of each.
"""

from __future__ import annotations

DATA_ENV = "CONTINUITY_DATA"
DEFAULT_DATA_DIR = "continuity-data"

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS = 640, 384, 16

# What an export does with a shot that has no approved take, when told not to refuse.
MISSING_CHOICES = ("black", "skip")
