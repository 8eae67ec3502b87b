"""The gRPC health probe: grpc.health.v1.Health/Check over cleartext HTTP/2 (h2), no grpcio.

The request and response messages are one-field protobufs, encoded by hand:
HealthCheckRequest{string service = 1}, HealthCheckResponse{ServingStatus status = 1}.
Output texts follow kubelet's grpc prober.
"""

from __future__ import annotations

import asyncio
import struct
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from peapod.node.netns import NetnsSocketFactory, connect_in_netns
from peapod.node.probes.types import PROBE_USER_AGENT, Outcome, ProbeResult
from peapod.node.probes.util import dial_error, go_quote, join_host_port

CHECK_PATH = "/grpc.health.v1.Health/Check"
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
GRPC_CODES = (
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
    "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
    "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
)
UNIMPLEMENTED = 12


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        name = GRPC_CODES[self.code] if 0 <= self.code < len(GRPC_CODES) else f"Code({self.code})"
        return f"rpc error: code = {name} desc = {self.message}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_request(service: str) -> bytes:
    """A length-prefixed gRPC message holding HealthCheckRequest{service}."""
    raw = service.encode()
    msg = (b"\x0a" + _varint(len(raw)) + raw) if raw else b""
    return struct.pack(">BI", 0, len(msg)) + msg


def decode_status(frame: bytes) -> int:
    """The status field of a length-prefixed HealthCheckResponse (0 when absent)."""
    if len(frame) < 5:
        raise ValueError("short gRPC message")
    compressed, length = struct.unpack(">BI", frame[:5])
    if compressed:
        raise ValueError("compressed gRPC response")
    msg = frame[5:5 + length]
    i, status = 0, 0
    while i < len(msg):
        key, i = _read_varint(msg, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(msg, i)
            if field == 1:
                status = value
        elif wire == 2:
            n, i = _read_varint(msg, i)
            i += n
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"bad wire type {wire}")
    return status


def _read_varint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        if not c & 0x80:
            return value, i
        shift += 7


async def _check(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str, service: str,
    timeout: float,
) -> int:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [
        (":method", "POST"), (":scheme", "http"), (":path", CHECK_PATH), (":authority", authority),
        ("content-type", "application/grpc"), ("te", "trailers"),
        ("user-agent", f"{PROBE_USER_AGENT} grpc-go/1.65.0"),
        ("grpc-timeout", f"{max(1, int(timeout * 1000))}m"),
    ])
    conn.send_data(sid, encode_request(service), end_stream=True)
    writer.write(conn.data_to_send())
    http_status: int | None = None
    grpc_status: int | None = None
    grpc_message = ""
    body = bytearray()
    ended = False
    while not ended:
        data = await reader.read(65536)
        if not data:
            raise _RpcError(14, "error reading from server: EOF")
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            raise _RpcError(13, f"connection error: {e}") from None
        for ev in events:
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                hdrs = dict(ev.headers)
                if ":status" in hdrs:
                    http_status = int(hdrs[":status"])
                if "grpc-status" in hdrs:
                    grpc_status = int(hdrs["grpc-status"])
                    grpc_message = unquote(hdrs.get("grpc-message", ""))
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                ended = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                raise _RpcError(13, f"stream terminated by RST_STREAM with error code: {ev.error_code}")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise _RpcError(14, f"connection closed by server (GOAWAY {ev.error_code})")
        out = conn.data_to_send()
        if out:
            writer.write(out)
    if http_status != 200:
        raise _RpcError(12 if http_status == 404 else 14,
                        f"unexpected HTTP status code received from server: {http_status}")
    if grpc_status is None:
        raise _RpcError(13, "server closed the stream without sending trailers")
    if grpc_status != 0:
        raise _RpcError(grpc_status, grpc_message)
    try:
        return decode_status(bytes(body))
    except ValueError as e:
        raise _RpcError(13, f"grpc: failed to unmarshal the received message: {e}") from None


async def grpc_probe(
    host: str, port: int, service: str, timeout: float, *, netns_path: str | None = None,
    factory: NetnsSocketFactory | None = None,
) -> ProbeResult:
    """kubelet's grpc prober: SERVING is success; everything else is a failure with its text."""
    addr = join_host_port(host, port)
    connected = False
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await connect_in_netns(netns_path, host, port, None, factory=factory)
            except TimeoutError:
                raise
            except OSError as e:
                return ProbeResult(Outcome.FAILURE, f"error: failed to connect service at {go_quote(addr)}: "
                                                    f"{dial_error(host, port, e)}")
            connected = True
            try:
                status = await _check(reader, writer, addr, service, timeout)
            finally:
                writer.close()
    except TimeoutError:
        if not connected:
            return ProbeResult(Outcome.FAILURE, f"timeout: failed to connect service {go_quote(addr)} within "
                                                f"{_go_duration(timeout)}: context deadline exceeded")
        return ProbeResult(Outcome.FAILURE,
                           f"timeout: health rpc did not complete within {_go_duration(timeout)}")
    except _RpcError as e:
        if e.code == UNIMPLEMENTED:
            return ProbeResult(Outcome.FAILURE, "error: this server does not implement the grpc health "
                                                f"protocol (grpc.health.v1.Health): {e.message}")
        return ProbeResult(Outcome.FAILURE, f"error: health rpc probe failed: {e}")
    except OSError as e:
        return ProbeResult(Outcome.FAILURE, f"error: health rpc probe failed: {e}")
    if status != 1:
        name = SERVING_STATUS.get(status, str(status))
        return ProbeResult(Outcome.FAILURE, f"service unhealthy (responded with {go_quote(name)})")
    return ProbeResult(Outcome.SUCCESS, "service healthy")


def _go_duration(seconds: float) -> str:
    return f"{seconds:g}s"
