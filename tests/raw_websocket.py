"""A WebSocket spoken by hand on a plain socket (RFC 6455), for tests that must break the
protocol on purpose: a frame cut short, a connection that ends with no close frame.
https://datatracker.ietf.org/doc/html/rfc6455"""

import base64
import os
import socket
import struct

# Frame opcodes (RFC 6455, 5.2).
CONTINUATION, TEXT, BINARY = 0x0, 0x1, 0x2


def raw_handshake(server, path, timeout=30):
    """Opens `path` on a ServerProcess with an allowed Origin; returns the socket after the 101."""
    sock = socket.create_connection((server.host, server.port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {server.host}:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {server.http_url}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed during the handshake: {response!r}"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101 "), response
    return sock


def client_frame(opcode, payload, final=True, announced_length=None):
    """One masked client frame (RFC 6455, 5.2); `announced_length` may promise more bytes than
    `payload` brings, to send a frame cut short."""
    length = len(payload) if announced_length is None else announced_length
    header = bytes([(0x80 if final else 0) | opcode])
    if length < 126:
        header += bytes([0x80 | length])
    elif length < 1 << 16:
        header += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        header += bytes([0x80 | 127]) + struct.pack("!Q", length)
    mask = os.urandom(4)
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
