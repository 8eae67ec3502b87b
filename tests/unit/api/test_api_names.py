import random

import pytest

from peapod.api import names

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and "
    "end with an alphanumeric character (e.g. 'my-name' or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("example.com", []),
        ("a", []),
        ("Example", [SUBDOMAIN_MSG]),
        ("-a", [SUBDOMAIN_MSG]),
        ("a_b", [SUBDOMAIN_MSG]),
        ("a\n", [SUBDOMAIN_MSG]),
        ("a" * 254, ["must be no more than 253 characters"]),
    ],
)
def test_dns1123_subdomain(value, errors):
    assert names.is_dns1123_subdomain(value) == errors


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("my-name", []),
        ("a.b", ["must not contain dots"]),
        ("A", [LABEL_MSG]),
        ("a" * 64, ["must be no more than 63 characters"]),
    ],
)
def test_dns1123_label(value, errors):
    assert names.is_dns1123_label(value) == errors


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("app", True),
        ("example.com/app", True),
        ("App_1.x", True),
        ("/app", False),
        ("a/b/c", False),
        ("Example.com/a", False),
        ("a" * 64, False),
        ("-a", False),
        ("", False),
    ],
)
def test_qualified_name(value, ok):
    assert (names.is_qualified_name(value) == []) is ok


def test_qualified_name_messages():
    assert names.is_qualified_name("/a") == ["prefix part must be non-empty"]
    assert names.is_qualified_name("a/") == [
        "name part must be non-empty",
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName' or 'my.name' or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ]


@pytest.mark.parametrize(
    ("value", "ok"), [("", True), ("v1.2_3-x", True), ("-x", False), ("a" * 64, False), ("a b", False)]
)
def test_label_value(value, ok):
    assert (names.is_valid_label_value(value) == []) is ok


@pytest.mark.parametrize(
    ("fn", "value", "ok"),
    [
        (names.is_c_identifier, "MY_VAR", True),
        (names.is_c_identifier, "1abc", False),
        (names.is_env_var_name, "my.env-name", True),
        (names.is_env_var_name, "1x", False),
        (names.is_env_var_name, "..", False),
        (names.is_relaxed_env_var_name, "1x y", True),
        (names.is_relaxed_env_var_name, "A=B", False),
        (names.is_relaxed_env_var_name, "", False),
        (names.is_config_map_key, "key.name", True),
        (names.is_config_map_key, "..x", False),
        (names.is_config_map_key, "a/b", False),
        (names.is_valid_port_name, "http", True),
        (names.is_valid_port_name, "123", False),
        (names.is_valid_port_name, "a--b", False),
        (names.is_valid_port_name, "abcdefghijklmnop", False),
        (names.is_http_header_name, "X-Header", True),
        (names.is_http_header_name, "X Header", False),
        (names.is_valid_percent, "25%", True),
        (names.is_valid_percent, "25", False),
    ],
)
def test_other_formats(fn, value, ok):
    assert (fn(value) == []) is ok


def test_env_var_and_relaxed_messages():
    assert names.is_relaxed_env_var_name("A=B") == [
        "a valid environment variable name must consist only of printable ASCII characters other than '='"
    ]
    assert names.is_env_var_name("1x")[0].startswith(
        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
        "and must not start with a digit (e.g. 'my.env-name' or 'MY_ENV.NAME' or 'MyEnvName1'"
    )


@pytest.mark.parametrize(
    ("name", "prefix", "ok"), [("web-", True, True), ("web-", False, False), ("-", True, False)]
)
def test_generate_name_prefix_rule(name, prefix, ok):
    assert (names.name_is_dns_subdomain(name, prefix) == []) is ok


def test_generate_name():
    rng = random.Random(7)
    name = names.generate_name("web-", rng)
    assert name.startswith("web-") and len(name) == 9
    assert all(c in names.RANDOM_ALPHABET for c in name[4:])
    long = names.generate_name("x" * 80, rng)
    assert len(long) == 63 and long.startswith("x" * 58)
    assert names.generate_name("web-", random.Random(7)) == name  # deterministic with a seeded rng


def test_annotation_size():
    assert not names.annotations_too_large({"a": "x" * 1000})
    assert names.annotations_too_large({"a": "x" * (256 * 1024)})
