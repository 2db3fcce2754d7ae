"""A number an operator configures: read from the Django setting, else the environment, else a default.

Several intervals and thresholds of the console (the staleness threshold, the runtime probe's interval)
are set this way; reading them in one place gives them the same rules: a value that is not a finite
number is logged and replaced by the default, and a value below the minimum is raised to it.
"""

from __future__ import annotations

import logging
import math
import os

from django.conf import settings

logger = logging.getLogger(__name__)


def number_setting(name: str, *, default: float, minimum: float) -> float:
    """``name`` as a Django setting, else as an environment variable, else ``default``; never below
    ``minimum``. A value that is not a finite number (text, NaN, infinity) is logged and gives ``default``."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    if value is None:
        return max(minimum, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        logger.warning("%s=%r is not a finite number; using %s", name, value, default)
        return max(minimum, default)
    return max(minimum, number)
