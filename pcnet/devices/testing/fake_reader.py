"""A network card reader simulator (the `card-reader` protocol) for tests: a TCP server on a
free loopback port that the driver connects to.

    reader = FakeReader(reactor); port = reader.listen()
    reader.swipe("1234")          # the reader sends the card number
    reader.commands               # what the server sent it: [b"v", b"b", ...]
    reader.drop()                 # cut the connection (the driver reconnects)
    reader.close() / reader.listen(port)   # the reader goes away / comes back
"""

from __future__ import annotations

from twisted.internet.protocol import Factory, Protocol

VERSION = "v1.0-fake"


class _ReaderConnection(Protocol):
    def __init__(self, reader):
        self.reader = reader

    def connectionMade(self):
        self.reader.connections.append(self)
        self.reader.accepted += 1

    def dataReceived(self, data: bytes):
        for byte in data:
            command = bytes([byte])
            if command in (b"\r", b"\n"):
                continue
            self.reader.commands.append(command)
            if command == b"v":
                self.transport.write(VERSION.encode() + b"\r\n")

    def connectionLost(self, reason):
        if self in self.reader.connections:
            self.reader.connections.remove(self)


class FakeReader(Factory):
    def __init__(self, reactor):
        self.reactor = reactor
        self.connections: list[_ReaderConnection] = []
        self.commands: list[bytes] = []
        self.accepted = 0
        self.port = None

    def buildProtocol(self, addr):
        return _ReaderConnection(self)

    def listen(self, port: int = 0) -> int:
        self.port = self.reactor.listenTCP(port, self, interface="127.0.0.1")
        return self.port.getHost().port

    def swipe(self, card: str, end: bytes = b"\r\n") -> None:
        for c in self.connections:
            c.transport.write(card.encode() + end)

    def send_raw(self, data: bytes) -> None:
        for c in self.connections:
            c.transport.write(data)

    def drop(self) -> None:
        for c in list(self.connections):
            c.transport.abortConnection()

    def close(self):
        """Stop listening and drop every connection (a Deferred)."""
        self.drop()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None

    @property
    def connected(self) -> bool:
        return bool(self.connections)
