"""Type checks the protocols' parameter classes share: a number that is not a bool."""

from __future__ import annotations

import numbers


def is_number(value) -> bool:
    """A real number (numpy's too), not ``True``/``False``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_whole(value) -> bool:
    """A whole number (numpy's too), not ``True``/``False``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
