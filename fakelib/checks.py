"""The one style of validation message, as params.yaml's (`fakelib.config`): `key = value is not allowed; expected
<what is allowed>`, naming the parameter (never a command-line flag) and its allowed values."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable


class ConfigError(ValueError):
    """A parameter that is unknown, of the wrong type or out of range; the message is one line."""


def not_allowed(key: str, value: object, allowed: str) -> ConfigError:
    """The error for `key = value`, to raise: `ConfigError("key = value is not allowed; expected <allowed>")`."""
    return ConfigError(f"{key} = {value!r} is not allowed; expected {allowed}")


def check_choice(key: str, value: object, choices: Iterable[object]) -> None:
    """Refuse a value outside `choices` (listed in the message; None as `None`)."""
    choices = tuple(choices)
    if value not in choices:
        raise not_allowed(key, value, "one of " + ", ".join(str(choice) for choice in choices))


def check_integer(key: str, value: object, low: int, high: int | None = None) -> None:
    """Refuse anything but an integer (not a bool) in `low..high` (`high` None: no upper bound)."""
    is_integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_integer or value < low or (high is not None and value > high):
        raise not_allowed(key, value, f"an integer {low}..{high}" if high is not None else f"an integer >= {low}")


def check_number(key: str, value: object, low: float, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    """Refuse anything but a real number (not a bool, not NaN) in the interval from `low` to `high` (None: no bound)."""
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    too_low = is_number and (value <= low if low_open else value < low)
    too_high = is_number and high is not None and (value >= high if high_open else value > high)
    if not is_number or too_low or too_high:
        if high is None:
            allowed = f"a number {'>' if low_open else '>='} {low}"
        else:
            allowed = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise not_allowed(key, value, allowed)
