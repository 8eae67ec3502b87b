from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peapod.api.quantity import (
    BINARY_SI,
    DECIMAL_SI,
    ERR_FORMAT_WRONG,
    ERR_SUFFIX,
    canonical_quantity,
    cpu_millicores,
    format_quantity,
    memory_bytes,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "value", "canonical"),
    [
        ("500m", Fraction(1, 2), "500m"),
        ("64Mi", 64 * 2**20, "64Mi"),
        ("1.5G", 1_500_000_000, "1500M"),
        ("1e3", 1000, "1e3"),
        ("0.1", Fraction(1, 10), "100m"),
        ("1000", 1000, "1k"),
        ("1500", 1500, "1500"),
        ("1024Ki", 2**20, "1Mi"),
        ("1536Mi", 1536 * 2**20, "1536Mi"),
        ("0.5Ki", 512, "512"),
        ("1.5Ki", 1536, "1536"),
        ("-1.5", Fraction(-3, 2), "-1500m"),
        ("1E", 10**18, "1E"),
        ("0.0000000001", Fraction(1, 10**9), "1n"),  # rounded up to nano units
        ("12e-3", Fraction(12, 1000), "12e-3"),
        ("+2", 2, "2"),
        ("0", 0, "0"),
        ("000", 0, "0"),
        ("1.", 1, "1"),
        (0.5, Fraction(1, 2), "500m"),
        (2, 2, "2"),
    ],
)
def test_parse_and_canonical(text, value, canonical):
    assert parse_quantity(text) == value
    assert canonical_quantity(text) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ERR_FORMAT_WRONG),
        ("abc", ERR_FORMAT_WRONG),
        ("1.2.3", ERR_FORMAT_WRONG),
        (" 1", ERR_FORMAT_WRONG),
        ("1Mi ", ERR_FORMAT_WRONG),
        ("2e", ERR_SUFFIX),
        ("1Qi", ERR_FORMAT_WRONG),
        ("1ki", ERR_SUFFIX),
        (True, ERR_FORMAT_WRONG),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(ValueError) as exc:
        parse_quantity(text)
    assert str(exc.value) == message


def test_error_message_is_kubernetes_wording():
    assert ERR_FORMAT_WRONG == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


@pytest.mark.parametrize(
    ("value", "fmt", "text"),
    [
        (Fraction(1, 4), DECIMAL_SI, "250m"),
        (2**30, BINARY_SI, "1Gi"),
        (1023, BINARY_SI, "1023"),
        (0, BINARY_SI, "0"),
    ],
)
def test_format(value, fmt, text):
    assert format_quantity(value, fmt) == text


@pytest.mark.parametrize(
    ("text", "milli"), [("250m", 250), ("1.5", 1500), ("2", 2000), ("0.0001", 1), (1, 1000)]
)
def test_cpu_millicores(text, milli):
    assert cpu_millicores(text) == milli


@pytest.mark.parametrize(("text", "size"), [("64Mi", 67108864), ("1G", 10**9), ("1.5Ki", 1536), ("100m", 1)])
def test_memory_bytes(text, size):
    assert memory_bytes(text) == size


@given(
    st.integers(min_value=-(10**24), max_value=10**24),
    st.integers(min_value=0, max_value=12),
    st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "e3", "e-2"]),
)
def test_canonical_round_trip(mantissa, scale, suffix):
    text = f"{mantissa / 10**scale:.{scale}f}{suffix}" if scale else f"{mantissa}{suffix}"
    value = parse_quantity(text)
    canonical = canonical_quantity(text)
    assert parse_quantity(canonical) == value
    assert canonical_quantity(canonical) == canonical
