"""SPDY/3.1 framing: frame types, an incremental parser, and the zlib name/value header codec.

kubectl (client-go through moby/spdystream) speaks SPDY framing version 3 over an upgraded HTTP/1.1
connection. Header blocks of SYN_STREAM, SYN_REPLY and HEADERS frames are compressed with one zlib
stream per direction for the whole connection, primed with the SPDY/3 dictionary and flushed with
Z_SYNC_FLUSH after each block. Header names must be lowercase and unique; several values of one name
are joined with NUL.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

VERSION = 3

# Control frame types.
SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9
FRAME_TOO_LARGE = 11

# GOAWAY status codes.
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1
GOAWAY_INTERNAL_ERROR = 2

SETTINGS_INITIAL_WINDOW_SIZE = 7
DEFAULT_WINDOW = 65536
MAX_FRAME_PAYLOAD = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (section 2.6.10.1 of the draft), 1423 bytes."""
    words = [*(
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status"
    ).split(), "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
    out = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    out += (
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        b"401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        b"503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        b"Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
        b"application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return out


HEADER_DICTIONARY = _dictionary()
# Some implementations (Chrome at one time) counted the C string's trailing NUL; accept both.
_DICTIONARIES = (HEADER_DICTIONARY, HEADER_DICTIONARY + b"\x00")


class SpdyProtocolError(Exception):
    """The peer sent bytes that are not valid SPDY/3; the session must end (GOAWAY PROTOCOL_ERROR)."""


Headers = dict[str, list[str]]


def make_headers(items: Mapping[str, str | Iterable[str]] | None = None) -> Headers:
    """Normalise to lowercase names with lists of values."""
    out: Headers = {}
    for k, v in (items or {}).items():
        vals = [v] if isinstance(v, str) else list(v)
        out.setdefault(k.lower(), []).extend(vals)
    return out


def header(headers: Headers, name: str) -> str | None:
    vals = headers.get(name.lower())
    return vals[0] if vals else None


@dataclass
class DataFrame:
    stream_id: int
    data: bytes = b""
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class SynStreamFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0
    associated_id: int = 0
    priority: int = 0
    slot: int = 0


@dataclass
class SynReplyFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class RstStreamFrame:
    stream_id: int
    status: int


@dataclass
class SettingsFrame:
    entries: list[tuple[int, int, int]] = field(default_factory=list)  # (flags, id, value)
    flags: int = 0


@dataclass
class PingFrame:
    ping_id: int


@dataclass
class GoAwayFrame:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass
class WindowUpdateFrame:
    stream_id: int
    delta: int


Frame = (DataFrame | SynStreamFrame | SynReplyFrame | RstStreamFrame | SettingsFrame | PingFrame
         | GoAwayFrame | HeadersFrame | WindowUpdateFrame)


def encode_header_block(headers: Headers) -> bytes:
    parts = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = "\x00".join(values).encode()
        parts += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(parts)


def decode_header_block(raw: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from(">I", raw, 0)
        pos = 4
        out: Headers = {}
        for _ in range(count):
            (nlen,) = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4:pos + 4 + nlen]
            pos += 4 + nlen
            (vlen,) = struct.unpack_from(">I", raw, pos)
            value = raw[pos + 4:pos + 4 + vlen]
            pos += 4 + vlen
            if len(name) != nlen or len(value) != vlen or not nlen:
                raise SpdyProtocolError("truncated header block")
            key = name.decode("utf-8", "replace")
            if key != key.lower() or key in out:
                raise SpdyProtocolError(f"invalid header name {key!r}")
            out[key] = value.decode("utf-8", "replace").split("\x00")
    except struct.error:
        raise SpdyProtocolError("truncated header block") from None
    if pos != len(raw):
        raise SpdyProtocolError("trailing bytes after header block")
    return out


class HeaderCompressor:
    """One per connection direction: the zlib context carries over from block to block."""

    def __init__(self, dictionary: bytes = HEADER_DICTIONARY) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, dictionary)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """Inflates header blocks; picks the dictionary variant the peer used from the zlib DICTID."""

    def __init__(self) -> None:
        self._z: zlib._Decompress | None = None
        self.dictionary: bytes | None = None

    def decompress(self, block: bytes) -> Headers:
        if self._z is None:
            if len(block) < 6:
                raise SpdyProtocolError("short compressed header block")
            dict_id = struct.unpack(">I", block[2:6])[0] if block[1] & 0x20 else None
            chosen = _DICTIONARIES[0]
            for d in _DICTIONARIES:
                if zlib.adler32(d) == dict_id:
                    chosen = d
            self.dictionary = chosen
            self._z = zlib.decompressobj(zdict=chosen)
        try:
            raw = self._z.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise SpdyProtocolError(f"header decompression failed: {e}") from None
        if self._z.unconsumed_tail:
            raise SpdyProtocolError("header block too large")
        return decode_header_block(raw)


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_PAYLOAD:
        raise ValueError("frame payload too large")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload


def encode_frame(frame: Frame, compressor: HeaderCompressor | None = None) -> bytes:
    """Serialise one frame. Frames with header blocks need the connection's compressor, and must be
    written in the order they were encoded."""
    if isinstance(frame, DataFrame):
        if len(frame.data) > MAX_FRAME_PAYLOAD:
            raise ValueError("data frame too large")
        head = struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (frame.flags << 24) | len(frame.data))
        return head + frame.data
    if isinstance(frame, SynStreamFrame | SynReplyFrame | HeadersFrame):
        if compressor is None:
            raise ValueError("a header compressor is needed")
        block = compressor.compress(frame.headers)
        if isinstance(frame, SynStreamFrame):
            head = struct.pack(">IIBB", frame.stream_id & 0x7FFFFFFF, frame.associated_id & 0x7FFFFFFF,
                               (frame.priority & 7) << 5, frame.slot)
            return _control(SYN_STREAM, frame.flags, head + block)
        kind = SYN_REPLY if isinstance(frame, SynReplyFrame) else HEADERS
        return _control(kind, frame.flags, struct.pack(">I", frame.stream_id & 0x7FFFFFFF) + block)
    if isinstance(frame, RstStreamFrame):
        return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id & 0x7FFFFFFF, frame.status))
    if isinstance(frame, SettingsFrame):
        body = struct.pack(">I", len(frame.entries)) + b"".join(
            struct.pack(">II", ((f & 0xFF) << 24) | (i & 0xFFFFFF), v) for f, i, v in frame.entries)
        return _control(SETTINGS, frame.flags, body)
    if isinstance(frame, PingFrame):
        return _control(PING, 0, struct.pack(">I", frame.ping_id))
    if isinstance(frame, GoAwayFrame):
        return _control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id & 0x7FFFFFFF, frame.status))
    if isinstance(frame, WindowUpdateFrame):
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id & 0x7FFFFFFF,
                                                      frame.delta & 0x7FFFFFFF))
    raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameParser:
    """Incremental parser: feed bytes as they arrive, get complete frames back in order.

    Unknown control frame types are skipped, as the SPDY/3 draft requires.
    """

    def __init__(self, max_payload: int = MAX_FRAME_PAYLOAD) -> None:
        self._buf = bytearray()
        self._max = max_payload
        self.decompressor = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            first, second = struct.unpack_from(">II", self._buf, 0)
            length = second & 0xFFFFFF
            flags = second >> 24
            if length > self._max:
                raise SpdyProtocolError(f"frame of {length} bytes is too large")
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            if first & 0x80000000:
                version = (first >> 16) & 0x7FFF
                if version != VERSION:
                    raise SpdyProtocolError(f"unsupported SPDY version {version}")
                frame = self._control(first & 0xFFFF, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                stream_id = first & 0x7FFFFFFF
                if stream_id == 0:
                    raise SpdyProtocolError("data frame on stream 0")
                frames.append(DataFrame(stream_id, payload, flags))
        return frames

    def _control(self, kind: int, flags: int, p: bytes) -> Frame | None:
        try:
            if kind == SYN_STREAM:
                sid, assoc, pri, slot = struct.unpack_from(">IIBB", p, 0)
                headers = self.decompressor.decompress(p[10:])
                if sid & 0x7FFFFFFF == 0:
                    raise SpdyProtocolError("SYN_STREAM with stream id 0")
                return SynStreamFrame(sid & 0x7FFFFFFF, headers, flags, assoc & 0x7FFFFFFF, pri >> 5, slot)
            if kind in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p, 0)
                headers = self.decompressor.decompress(p[4:])
                cls = SynReplyFrame if kind == SYN_REPLY else HeadersFrame
                return cls(sid & 0x7FFFFFFF, headers, flags)
            if kind == RST_STREAM:
                sid, status = struct.unpack(">II", p)
                return RstStreamFrame(sid & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (n,) = struct.unpack_from(">I", p, 0)
                if len(p) != 4 + 8 * n:
                    raise SpdyProtocolError("bad SETTINGS length")
                entries = []
                for i in range(n):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return SettingsFrame(entries, flags)
            if kind == PING:
                (pid,) = struct.unpack(">I", p)
                return PingFrame(pid)
            if kind == GOAWAY:
                last, status = struct.unpack(">II", p)
                return GoAwayFrame(last & 0x7FFFFFFF, status)
            if kind == WINDOW_UPDATE:
                sid, delta = struct.unpack(">II", p)
                return WindowUpdateFrame(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error:
            raise SpdyProtocolError(f"malformed control frame of type {kind}") from None
        return None
