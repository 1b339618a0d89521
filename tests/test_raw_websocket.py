"""The hand-made frames of tests/raw_websocket.py are what RFC 6455 says, read back by the
websockets library's own frame parser, so a test that sends one breaks only what it means to."""

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tests.raw_websocket import BINARY, CONTINUATION, TEXT, client_frame


def parsed(frame_bytes):
    """The frame as websockets reads it on the server side (masked), or None if incomplete."""
    reader = StreamReader()
    reader.feed_data(frame_bytes)
    parser = Frame.parse(reader.read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    return None


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
@pytest.mark.parametrize("opcode", [TEXT, BINARY, CONTINUATION])
def test_a_frame_reads_back_with_its_opcode_payload_and_fin_bit(opcode, size):
    payload = b"x" * size
    frame = parsed(client_frame(opcode, payload))
    assert (frame.opcode, frame.data, frame.fin) == (Opcode(opcode), payload, True)


def test_a_fragment_reads_back_as_not_final():
    assert parsed(client_frame(TEXT, b"first half, ", final=False)).fin is False


def test_a_frame_that_promises_more_than_it_brings_is_incomplete():
    assert parsed(client_frame(CONTINUATION, b"0123456789", announced_length=1000)) is None
    assert parsed(client_frame(CONTINUATION, b"0123456789", announced_length=10)) is not None
