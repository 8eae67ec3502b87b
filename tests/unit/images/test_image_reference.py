import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from peapod.node.images.errors import InvalidReferenceError
from peapod.node.images.reference import is_image_id, parse_reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag", "digest", "canonical"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None, "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None, "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io", "library/busybox", "latest", None, None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None, None),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None, None),
        ("bitnami/nginx:1.2", "docker.io", "bitnami/nginx", "1.2", None, None),
        ("quay.io/coreos/etcd:v3.5", "quay.io", "coreos/etcd", "v3.5", None, None),
        ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest"),
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None, "localhost:5000/app:v1"),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "a/b/c", "t", None, None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None, None),
        (f"busybox@{D}", "docker.io", "library/busybox", None, D, f"docker.io/library/busybox@{D}"),
        (f"busybox:1.36@{D}", "docker.io", "library/busybox", "1.36", D, None),
        ("Example.com/app", "Example.com", "app", "latest", None, None),
        ("my-registry.local:443/team_x/app.web-1:v1.0_rc", "my-registry.local:443", "team_x/app.web-1",
         "v1.0_rc", None, None),
    ],
)
def test_parse(text, registry, repo, tag, digest, canonical):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)
    if canonical:
        assert str(ref) == canonical
    assert ref.reference == (digest or tag)


@pytest.mark.parametrize(
    "text",
    ["", " busybox", "UPPER", "busybox:", "busybox:-bad", "a//b", "busybox@sha256:short",
     "busybox@md5:" + "a" * 32, "-leading", "app/", "x" * 300, "busybox:" + "t" * 129,
     "docker.io/Library/busybox"],
)
def test_invalid(text):
    with pytest.raises(InvalidReferenceError):
        parse_reference(text)


def test_familiar_and_api_host():
    assert parse_reference("busybox").familiar() == "busybox:latest"
    assert parse_reference("bitnami/nginx").familiar() == "bitnami/nginx:latest"
    assert parse_reference("localhost:5000/app:v1").familiar() == "localhost:5000/app:v1"
    assert parse_reference("busybox").api_host == "registry-1.docker.io"
    assert parse_reference("quay.io/a/b").api_host == "quay.io"


def test_no_default_tag_and_with_helpers():
    ref = parse_reference("busybox", default_tag=None)
    assert ref.tag is None
    assert ref.with_tag("x").tag == "x"
    assert ref.with_digest(D).digest == D and ref.with_digest(D).tag is None


def test_is_image_id():
    assert is_image_id("a" * 64) and is_image_id(D)
    assert not is_image_id("busybox") and not is_image_id("a" * 63)


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}", fullmatch=True)
_registry = st.sampled_from(["", "docker.io/", "quay.io/", "localhost:5000/", "127.0.0.1:1234/",
                             "r.example.com/"])
_tag = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
_digest = st.one_of(st.none(), st.from_regex(r"sha256:[a-f0-9]{64}", fullmatch=True))


@given(_registry, st.lists(_component, min_size=1, max_size=3), _tag, _digest)
def test_canonical_form_round_trips(registry, parts, tag, digest):
    # Without a registry, a first component with a dot is read as a domain (as Docker does): "0_0.0/x"
    # is then an invalid domain, not a repository path, so such names are not round-trip candidates.
    assume(registry or len(parts) == 1 or "." not in parts[0])
    text = registry + "/".join(parts) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref


def test_familiar_name_keeps_docker_io_when_the_first_component_looks_like_a_host():
    ref = parse_reference("docker.io/0.0/0")
    assert ref.familiar() == "docker.io/0.0/0:latest"
    assert parse_reference(ref.familiar()) == ref
