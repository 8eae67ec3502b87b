import base64

from peapod.node.images.auth import Credentials, credentials_for, parse_challenges
from peapod.node.images.reference import parse_reference


def test_docker_hub_bearer_challenge():
    [c] = parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                           'scope="repository:library/busybox:pull"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull"}


def test_quoted_commas_escapes_and_multiple_challenges():
    cs = parse_challenges('Basic realm="a, b", Bearer realm="https://x/t", scope="repository:a/b:pull,push", '
                          'error="insufficient_scope", note="say \\"hi\\""')
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].params == {"realm": "a, b"}
    assert cs[1].params["scope"] == "repository:a/b:pull,push"
    assert cs[1].params["error"] == "insufficient_scope"
    assert cs[1].params["note"] == 'say "hi"'


def test_unquoted_values_and_case():
    [c] = parse_challenges("BASIC Realm=registry")
    assert c.scheme == "basic" and c.params == {"realm": "registry"}
    assert parse_challenges("") == []


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_dockerconfigjson_lookup():
    cfg = {"auths": {
        "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpass")},
        "quay.io": {"username": "q", "password": "qp"},
        "quay.io/team": {"username": "team", "password": "tp"},
        "*.example.com": {"auth": b64("wild:card")},
        "localhost:5000": {"auth": b64("local:pw")},
        "broken.io": {"auth": "!!notbase64"},
    }}
    assert credentials_for(parse_reference("busybox"), cfg) == [Credentials("hubuser", "hubpass")]
    assert credentials_for(parse_reference("quay.io/team/app"), cfg) == [
        Credentials("team", "tp"), Credentials("q", "qp")]  # longer (more specific) key first
    assert credentials_for(parse_reference("quay.io/other/app"), cfg) == [Credentials("q", "qp")]
    assert credentials_for(parse_reference("r.example.com/a"), cfg) == [Credentials("wild", "card")]
    assert credentials_for(parse_reference("a.b.example.com/a"), cfg) == []  # glob per label
    assert credentials_for(parse_reference("localhost:5000/a"), cfg) == [Credentials("local", "pw")]
    assert credentials_for(parse_reference("localhost:5001/a"), cfg) == []  # port must match
    assert credentials_for(parse_reference("broken.io/a"), cfg) == []


def test_lists_bare_credentials_and_tokens():
    ref = parse_reference("quay.io/a/b")
    secrets = [{"auths": {"quay.io": {"username": "one", "password": "1"}}},
               {"auths": {"quay.io": {"username": "two", "password": "2"}}}]
    assert [c.username for c in credentials_for(ref, secrets)] == ["one", "two"]
    assert credentials_for(ref, {"username": "u", "password": "p"}) == [Credentials("u", "p")]
    assert credentials_for(ref, {"quay.io": {"auth": b64("legacy:cfg")}}) == [Credentials("legacy", "cfg")]
    [tok] = credentials_for(ref, {"auths": {"quay.io": {"identitytoken": "refresh"}}})
    assert tok.identity_token == "refresh" and not tok.has_basic
    assert credentials_for(ref, None) == []


def test_credentials_never_print_password():
    assert "secret" not in repr(Credentials("u", "secret"))
    assert Credentials("u", "p").basic_header() == "Basic " + b64("u:p")
