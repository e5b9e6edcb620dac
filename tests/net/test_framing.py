"""Newline framing with a length limit (pcnet.net._framing)."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from pcnet.net._framing import LineFraming


class Collector(LineFraming):
    max_line_length = 10

    def __init__(self):
        super().__init__()
        self.lines = []
        self.exceeded = []

    def lineReceived(self, line):
        self.lines.append(line)

    def lineLengthExceeded(self, length):
        self.exceeded.append(length)
        super().lineLengthExceeded(length)


def collector():
    p = Collector()
    p.makeConnection(StringTransport())
    return p


def test_lines_split_across_chunks_and_several_per_chunk():
    p = collector()
    for chunk in [b"ab", b"c\nde", b"f\ng\nh", b"", b"\n"]:
        p.dataReceived(chunk)
    assert p.lines == [b"abc", b"def", b"g", b"h"]


def test_blank_lines_are_ignored():
    p = collector()
    p.dataReceived(b"\n\na\n\n")
    assert p.lines == [b"a"]


def test_line_at_the_limit_is_accepted():
    p = collector()
    p.dataReceived(b"x" * 10 + b"\n")
    assert p.lines == [b"x" * 10] and not p.exceeded


def test_over_long_line_in_one_chunk_closes_after_earlier_lines():
    p = collector()
    p.dataReceived(b"ok\n" + b"x" * 11 + b"\nnever\n")
    assert p.lines == [b"ok"]
    assert p.exceeded == [11]
    assert p.transport.disconnecting


def test_over_long_partial_line_is_refused_before_its_end_arrives():
    p = collector()
    p.dataReceived(b"x" * 6)
    p.dataReceived(b"x" * 6)
    assert p.exceeded == [12]
    p.dataReceived(b"more\nline\n")
    assert p.lines == []


def test_over_long_tail_after_complete_lines():
    p = collector()
    p.dataReceived(b"a\n" + b"y" * 11)
    assert p.lines == [b"a"] and p.exceeded == [11]


@given(st.lists(st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       st.lists(st.integers(min_value=1, max_value=7), min_size=1))
def test_any_chunking_gives_the_same_lines(lines, cuts):
    data = b"".join(line + b"\n" for line in lines)
    p = collector()
    i = k = 0
    while i < len(data):
        n = cuts[k % len(cuts)]
        p.dataReceived(data[i:i + n])
        i += n
        k += 1
    assert p.lines == [line for line in lines if line]
    assert not p.exceeded
