"""A WebSocket echo at /ws/echo/, written against the raw ASGI WebSocket messages.

newtest/asgi.py sends every WebSocket connection here. The messages are the ones in
https://asgi.readthedocs.io/en/latest/specs/www.html#websocket
"""

import logging
from urllib.parse import urlsplit

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

logger = logging.getLogger(__name__)

ECHO_PATH = "/ws/echo/"
# Well below the servers' own limits (daphne 4: 1 MiB, uvicorn: 16 MiB), so this app enforces it.
MAX_MESSAGE_BYTES = 64 * 1024
MESSAGE_TOO_BIG = 1009  # the WebSocket close code for it (RFC 6455, section 7.4.1)
MESSAGE_TOO_BIG_PRIVATE_RANGE = 4009  # the same, where a server allows no 1xxx code but 1000


async def websocket_echo(scope, receive, send):
    """Accepts a same-site handshake to /ws/echo/, then sends every message back as it came."""
    await receive()  # websocket.connect: the client asks for the handshake
    refusal = reason_to_refuse(scope)
    if refusal:
        logger.warning("WebSocket %s refused: %s", scope["path"], refusal)
        # Closing before accepting refuses the handshake: the server answers HTTP 403.
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept"})

    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return  # the client closed or vanished: nothing is left running
        # A websocket.receive carries either "text" (str) or "bytes".
        text, data = message.get("text"), message.get("bytes")
        size = len(text.encode()) if text is not None else len(data)
        if size > MAX_MESSAGE_BYTES:
            logger.warning("WebSocket %s closed: a message of %d bytes", scope["path"], size)
            await close_as_message_too_big(send)
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": data})


async def close_as_message_too_big(send):
    """Closes with 1009, RFC 6455's code for a message too big. Daphne (through autobahn) lets
    an application close only with 1000 or 3000-4999, so there it closes with 4009 instead.
    (Daphne also drops every close reason: its clients see 4009 and an empty reason.)"""
    reason = f"messages are limited to {MAX_MESSAGE_BYTES} bytes"
    try:
        await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG, "reason": reason})
    except Exception:  # daphne: "invalid close code 1009 (must be 1000 or from [3000, 4999])"
        await send({
            "type": "websocket.close", "code": MESSAGE_TOO_BIG_PRIVATE_RANGE, "reason": reason,
        })


def reason_to_refuse(scope):
    """Why this handshake must not complete, or None to accept it."""
    if scope["path"] != ECHO_PATH:
        return "no WebSocket route for this path"
    origin = dict(scope["headers"]).get(b"origin")
    if origin is None:
        return "no Origin header (browsers always send one, so we ask every client for one)"
    origin = origin.decode("latin-1")
    if not host_is_allowed(urlsplit(origin).netloc):
        return f"Origin {origin} is not in ALLOWED_HOSTS"
    return None


def host_is_allowed(host):
    """Django's own ALLOWED_HOSTS rule, the one it applies to HTTP requests: get_host() runs
    validate_host() against ALLOWED_HOSTS, or with DEBUG and an empty list, localhost's names."""
    request = HttpRequest()
    request.META["HTTP_HOST"] = host
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True
