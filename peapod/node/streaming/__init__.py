"""Streaming protocols of the node agent: exec/attach and port-forward as kubectl and the Python
client speak them (WebSocket channel.k8s.io, SPDY/3.1, SPDY tunnelled in WebSocket).

The agent supplies backends; the protocol layer hands them clean sessions:

    async def exec_handler(request):
        opts = parse_exec_options(request.query)
        return await handle_exec(request, MyExec(opts.command, opts.container), tty=opts.tty,
                                 stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr)

    async def portforward_handler(request):
        return await handle_portforward(request, MyPortForward(pod))
"""

from peapod.node.streaming.portforward import PortForwardBackend, handle_portforward, parse_ports
from peapod.node.streaming.remotecommand import (
    ExecBackend,
    ExecOptions,
    StreamError,
    StreamSession,
    error_status,
    exit_status,
    handle_exec,
    parse_bool,
    parse_exec_options,
)

__all__ = [
    "ExecBackend",
    "ExecOptions",
    "PortForwardBackend",
    "StreamError",
    "StreamSession",
    "error_status",
    "exit_status",
    "handle_exec",
    "handle_portforward",
    "parse_bool",
    "parse_exec_options",
    "parse_ports",
]
