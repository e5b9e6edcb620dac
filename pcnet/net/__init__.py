"""Networking shared by every pcnet role: TLS, the listeners and the pcnet/1 line protocol.

- `pcnet.net.tls`: the deployment's own certificate authority and the TLS options built from it;
- `pcnet.net.listener`: the Application/Site Server listener that serves plain HTTP, HTTPS and
  pcnet/1 on one port (first byte, then ALPN, picks the protocol);
- `pcnet.net.line`: pcnet/1 itself, one implementation for both ends of a link;
- `pcnet.net.limits`: what strangers can make a server hold: connection caps per source and in
  total, rate-limited logs, budgeted work for handshakes and deadline closes, open-file limits;
- `pcnet.net.registry`: node approval (`NodeStatus`, the in-memory `MemoryNodeRegistry`).

The protocol is specified in `docs/protocol.md`.
"""

from pcnet.net.line import (
    PROTOCOL_VERSION,
    LineClientFactory,
    LineClientProtocol,
    LineConfig,
    LineProtocol,
    LineServerFactory,
    LineServerProtocol,
    LinkDown,
    Operations,
    RemoteError,
    connect,
)
from pcnet.net.listener import MultiplexingFactory
from pcnet.net.registry import MemoryNodeRegistry, NodeStatus

__all__ = [
    "PROTOCOL_VERSION",
    "LineClientFactory",
    "LineClientProtocol",
    "LineConfig",
    "LineProtocol",
    "LineServerFactory",
    "LineServerProtocol",
    "LinkDown",
    "MemoryNodeRegistry",
    "MultiplexingFactory",
    "NodeStatus",
    "Operations",
    "RemoteError",
    "connect",
]
