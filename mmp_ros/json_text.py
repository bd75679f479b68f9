"""JSON that strict readers take: NaN and infinities (a class seen nowhere, a figure with no
frame behind it) written as null, which ``json.dumps`` would write as the bare tokens
``NaN``/``Infinity`` that jq and JavaScript refuse."""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float in it, however deep, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`finite_or_none` (``options`` as json.dumps takes them)."""
    return json.dumps(finite_or_none(value), allow_nan=False, **options)
