"""Newline framing with a length limit, for pcnet/1.

Like `twisted.protocols.basic.LineOnlyReceiver`, but linear in the size of a long line that
arrives in many chunks (LineOnlyReceiver re-joins and re-splits its whole buffer on every chunk),
with the limit checked before a partial line is buffered any further, and with no `\\r` handling:
pcnet/1 lines end with `\\n` alone (JSON ignores a stray `\\r` before it anyway).
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol


class LineFraming(Protocol):
    """Splits the byte stream into `\\n`-terminated lines of at most `max_line_length` bytes.

    Subclasses implement `lineReceived(line)` (bytes, without the `\\n`) and
    `lineLengthExceeded(length)`, and set `_stopped` once they close the connection so that no
    further line from the current chunk is delivered. `max_line_length` may change between
    lines (it is read for each one).
    """

    max_line_length = 1 << 20
    _stopped = False

    def __init__(self) -> None:
        self._partial: list[bytes] = []
        self._partial_len = 0

    def dataReceived(self, data: bytes) -> None:
        lines = data.split(b"\n")
        if len(lines) == 1:
            # No line ends in this chunk: keep it without copying what came before.
            if data:
                self._partial.append(data)
                self._partial_len += len(data)
                if self._partial_len > self.max_line_length:
                    self._exceeded(self._partial_len)
            return
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = b"".join(self._partial)
            self._partial = []
            self._partial_len = 0
        tail = lines.pop()
        receive = self.lineReceived
        for line in lines:
            if self._stopped:
                return
            # Read per line: a line may change the limit (pcnet/1 raises it after the hello).
            if len(line) > self.max_line_length:
                self._exceeded(len(line))
                return
            if line:  # blank lines are allowed, and ignored
                receive(line)
        if tail and not self._stopped:
            if len(tail) > self.max_line_length:
                self._exceeded(len(tail))
                return
            self._partial.append(tail)
            self._partial_len = len(tail)

    def _exceeded(self, length: int) -> None:
        self._partial = []
        self._partial_len = 0
        if not self._stopped:
            self.lineLengthExceeded(length)

    def lineReceived(self, line: bytes) -> None:
        raise NotImplementedError

    def lineLengthExceeded(self, length: int) -> None:
        """The peer sent a line (or the start of one) longer than the limit."""
        self._stopped = True
        self.transport.loseConnection()
