"""A WebSocket handshake made by hand on a plain socket, for tests that must break the protocol
on purpose (a frame cut short, a connection that ends with no close frame)."""

import base64
import os
import socket


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
