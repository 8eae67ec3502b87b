"""SPDY/3 framing and name/value header compression."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peapod.node.streaming import spdy_frames as f


def roundtrip(frames: list[f.Frame]) -> list[f.Frame]:
    comp = f.HeaderCompressor()
    wire = b"".join(f.encode_frame(fr, comp) for fr in frames)
    return f.FrameParser().feed(wire)


def test_dictionary_is_the_spdy3_one() -> None:
    d = f.HEADER_DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert zlib.adler32(d) == 0xE3C6A7C2


def test_every_frame_type_round_trips() -> None:
    frames: list[f.Frame] = [
        f.SynStreamFrame(1, {"streamtype": ["error"], "port": ["80"]}, f.FLAG_FIN, 0, 3, 0),
        f.SynReplyFrame(1, {}),
        f.HeadersFrame(1, {"x": ["a", "b"]}, f.FLAG_FIN),
        f.DataFrame(3, b"hello", f.FLAG_FIN),
        f.DataFrame(5, b""),
        f.RstStreamFrame(3, f.CANCEL),
        f.SettingsFrame([(0, f.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (1, 4, 100)]),
        f.PingFrame(7),
        f.GoAwayFrame(9, f.GOAWAY_PROTOCOL_ERROR),
        f.WindowUpdateFrame(0, 12345),
        f.WindowUpdateFrame(3, 1),
    ]
    assert roundtrip(frames) == frames


def test_wire_layout_matches_the_draft() -> None:
    assert f.encode_frame(f.PingFrame(1)) == bytes.fromhex("8003000600000004 00000001".replace(" ", ""))
    assert f.encode_frame(f.DataFrame(5, b"ab", f.FLAG_FIN)) == bytes.fromhex("00000005010000026162")
    assert f.encode_frame(f.GoAwayFrame(3, 0)) == bytes.fromhex("80030007000000080000000300000000")
    assert f.encode_frame(f.RstStreamFrame(1, 5)) == bytes.fromhex("80030003000000080000000100000005")


def test_header_blocks_share_one_zlib_context_per_direction() -> None:
    comp = f.HeaderCompressor()
    parser = f.FrameParser()
    headers = {"streamtype": ["stdout"], "requestid": ["0"]}
    first = f.encode_frame(f.SynStreamFrame(1, headers), comp)
    second = f.encode_frame(f.SynStreamFrame(3, headers), comp)
    assert len(second) < len(first)  # the repeated names compress against the shared window
    assert parser.feed(first)[0].headers == headers  # type: ignore[union-attr]
    assert parser.feed(second)[0].headers == headers  # type: ignore[union-attr]
    # A fresh decompressor cannot read a block from the middle of the stream.
    with pytest.raises(f.SpdyProtocolError):
        f.FrameParser().feed(second)


def test_decompressor_follows_the_peers_dictionary_variant() -> None:
    nul_dict = f.HEADER_DICTIONARY + b"\x00"
    z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, nul_dict)
    block = z.compress(f.encode_header_block({"a": ["b"]})) + z.flush(zlib.Z_SYNC_FLUSH)
    wire = struct.pack(">HHI", 0x8003, f.SYN_REPLY, 4 + len(block)) + struct.pack(">I", 1) + block
    parser = f.FrameParser()
    assert parser.feed(wire) == [f.SynReplyFrame(1, {"a": ["b"]})]
    assert parser.decompressor.dictionary == nul_dict


def test_incremental_feed_byte_by_byte() -> None:
    comp = f.HeaderCompressor()
    frames = [f.SynStreamFrame(1, {"k": ["v"]}), f.DataFrame(1, b"x" * 1000), f.PingFrame(2)]
    wire = b"".join(f.encode_frame(fr, comp) for fr in frames)
    parser = f.FrameParser()
    got: list[f.Frame] = []
    for i in range(len(wire)):
        got += parser.feed(wire[i:i + 1])
    assert got == frames


def test_unknown_control_frames_are_skipped() -> None:
    wire = struct.pack(">HHI", 0x8003, 0x0A, 3) + b"abc" + f.encode_frame(f.PingFrame(1))
    assert f.FrameParser().feed(wire) == [f.PingFrame(1)]


@pytest.mark.parametrize("wire", [
    struct.pack(">HHI", 0x8002, f.PING, 4) + b"\0\0\0\1",  # SPDY/2
    struct.pack(">II", 0, 1) + b"x",  # data on stream 0
    struct.pack(">HHI", 0x8003, f.PING, 2) + b"\0\0",  # short ping
])
def test_protocol_errors(wire: bytes) -> None:
    with pytest.raises(f.SpdyProtocolError):
        f.FrameParser().feed(wire)


def test_uppercase_or_duplicate_header_names_are_rejected() -> None:
    raw = struct.pack(">I", 1) + struct.pack(">I", 4) + b"Port" + struct.pack(">I", 2) + b"80"
    with pytest.raises(f.SpdyProtocolError):
        f.decode_header_block(raw)
    one = struct.pack(">I", 1) + b"a" + struct.pack(">I", 1) + b"b"
    with pytest.raises(f.SpdyProtocolError):
        f.decode_header_block(struct.pack(">I", 2) + one + one)


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(f.SpdyProtocolError):
        f.FrameParser(max_payload=10).feed(struct.pack(">II", 1, 11))


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20)
values = st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
                          max_size=30), min_size=1, max_size=3)


@given(st.lists(st.dictionaries(names, values, max_size=6), min_size=1, max_size=5))
def test_header_blocks_round_trip(blocks: list[dict[str, list[str]]]) -> None:
    frames: list[f.Frame] = [f.HeadersFrame(2 * i + 1, b) for i, b in enumerate(blocks)]
    assert roundtrip(frames) == frames
