"""Kubernetes ``resource.Quantity``: parsing, canonical formatting and unit helpers.

Values are exact :class:`fractions.Fraction` s, rounded up to nano units at parse time the way
apimachinery does, so ``parse_quantity("0.5") == parse_quantity("500m")`` holds.
The format a quantity was written in (``DecimalSI``, ``BinarySI``, ``DecimalExponent``) decides how it
prints back: ``64Mi`` stays ``64Mi``, ``1.5G`` becomes ``1500M``, ``0.1`` becomes ``100m``.
"""

from __future__ import annotations

import math
from fractions import Fraction

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

ERR_FORMAT_WRONG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

_DEC_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BIN_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC_BY_EXP = {v: k for k, v in _DEC_SUFFIXES.items()}
_BIN_BY_EXP = {0: "", **{v: k for k, v in _BIN_SUFFIXES.items()}}
_SUFFIX_CHARS = set("eEinumkKMGTP")
_NANO = Fraction(1, 10**9)

QuantityLike = str | int | float | Fraction


def _split(text: str) -> tuple[bool, str, str, str]:
    """Split like apimachinery's parseQuantityString: (positive, integer digits, fraction digits, suffix)."""
    end = len(text)
    pos = 0
    positive = True
    if pos < end and text[0] in "+-":
        positive = text[0] == "+"
        pos += 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return positive, "0", "", ""
    start = pos
    while pos < end and text[pos].isdigit() and text[pos].isascii():
        pos += 1
    num = text[start:pos] or "0"
    denom = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos].isdigit() and text[pos].isascii():
            pos += 1
        denom = text[start:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos].isdigit() and text[pos].isascii():
        pos += 1
    if pos < end:
        raise ValueError(ERR_FORMAT_WRONG)
    return positive, num, denom, text[suffix_start:]


def _interpret_suffix(suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) for a suffix; raises ValueError(ERR_SUFFIX)."""
    if suffix in _DEC_SUFFIXES:
        return 10, _DEC_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BIN_SUFFIXES:
        return 2, _BIN_SUFFIXES[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        try:
            return 10, int(suffix[1:]), DECIMAL_EXPONENT
        except ValueError:
            pass
    raise ValueError(ERR_SUFFIX)


def _round_up_nano(value: Fraction) -> Fraction:
    """Round away from zero to a whole number of nano units (apimachinery keeps 9 decimal places)."""
    scaled = value / _NANO
    if scaled.denominator == 1:
        return value
    n = math.ceil(abs(scaled))
    return Fraction(n if value > 0 else -n) * _NANO


def _to_text(value: QuantityLike) -> str:
    if isinstance(value, bool):
        raise ValueError(ERR_FORMAT_WRONG)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(ERR_FORMAT_WRONG)
        return repr(value)
    if isinstance(value, str):
        return value
    raise ValueError(ERR_FORMAT_WRONG)


def parse_quantity_with_format(value: QuantityLike) -> tuple[Fraction, str]:
    """Parse a quantity (string, or a JSON number) into (exact value, format)."""
    if isinstance(value, Fraction):
        return value, DECIMAL_SI
    text = _to_text(value)
    if not text:
        raise ValueError(ERR_FORMAT_WRONG)
    positive, num, denom, suffix = _split(text)
    base, exponent, fmt = _interpret_suffix(suffix)
    amount = Fraction(int(num)) + (Fraction(int(denom), 10 ** len(denom)) if denom else 0)
    amount *= Fraction(base) ** exponent
    if not positive:
        amount = -amount
    return _round_up_nano(amount), fmt


def parse_quantity(value: QuantityLike) -> Fraction:
    """Exact value of a quantity: "500m" -> 1/2, "64Mi" -> 67108864. ValueError with Kubernetes' message."""
    return parse_quantity_with_format(value)[0]


def is_quantity(value: object) -> bool:
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def _remove_factors(value: int, base: int) -> tuple[int, int]:
    times = 0
    while value != 0 and value % base == 0:
        value //= base
        times += 1
    return value, times


def format_quantity(value: Fraction | int, fmt: str = DECIMAL_SI) -> str:
    """Canonical string of ``value`` in ``fmt``, as ``Quantity.String()`` prints it."""
    value = _round_up_nano(Fraction(value))
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mag = abs(value)
    if fmt == BINARY_SI:
        if mag < 1024 or mag.denominator != 1:
            fmt = DECIMAL_SI
        else:
            amount, times = _remove_factors(int(mag), 1024)
            while times > 6:
                amount *= 1024
                times -= 1
            return f"{sign}{amount}{_BIN_BY_EXP[times * 10]}"
    nanos = int(mag / _NANO)
    amount, times = _remove_factors(nanos, 10)
    exponent = times - 9
    shift = exponent % 3
    amount *= 10**shift
    exponent -= shift
    if fmt == DECIMAL_EXPONENT:
        return f"{sign}{amount}" + (f"e{exponent}" if exponent else "")
    while exponent > 18:
        amount *= 1000
        exponent -= 3
    return f"{sign}{amount}{_DEC_BY_EXP[exponent]}"


def canonical_quantity(value: QuantityLike) -> str:
    """Re-print a quantity the way the API server stores it ("1.5G" -> "1500M", "1024Ki" -> "1Mi")."""
    amount, fmt = parse_quantity_with_format(value)
    return format_quantity(amount, fmt)


def cpu_millicores(value: QuantityLike) -> int:
    """CPU quantity in millicores, rounded up ("250m" -> 250, "1.5" -> 1500)."""
    return math.ceil(parse_quantity(value) * 1000)


def memory_bytes(value: QuantityLike) -> int:
    """Memory (or any byte) quantity in bytes, rounded up ("64Mi" -> 67108864)."""
    return math.ceil(parse_quantity(value))
