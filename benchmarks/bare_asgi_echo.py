"""The floor for an ASGI server: the least an ASGI application can do, with no Django.

It answers the three things the benchmark asks of the tutorial's steps, so each step's figure
can be divided by this one under the same server: a small HTML page over HTTP, a WebSocket echo
at any /ws/echo/ path, and a chat-room broadcast at /ws/chat/<room>/ (every text a client sends
goes to every client in that room, sender included). The messages are the ones in
https://asgi.readthedocs.io/en/latest/specs/www.html

Run it from this directory like a step: `uvicorn bare_asgi_echo:application` or
`daphne bare_asgi_echo:application`.
"""

import contextlib

PAGE = b"<!DOCTYPE html>\n<title>bare ASGI</title>\n<p>No Django here.</p>\n"
CHAT_PREFIX = "/ws/chat/"
# Room path -> the `send` callables of the connections in it; one process, so a dict will do.
ROOMS = {}


async def application(scope, receive, send):
    if scope["type"] == "http":
        await answer_page(receive, send)
    elif scope["type"] == "websocket":
        if scope["path"].startswith(CHAT_PREFIX):
            await chat_room(scope["path"], receive, send)
        else:
            await websocket_echo(receive, send)
    elif scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
    else:
        raise ValueError(f"bare_asgi_echo has no answer for {scope['type']!r} connections")


async def answer_page(receive, send):
    # The request body is not needed, but reading it to the end is the polite thing to do.
    message = await receive()
    while message.get("more_body"):
        message = await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(PAGE)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": PAGE})


async def websocket_echo(receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def chat_room(path, receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    members = ROOMS.setdefault(path, set())
    members.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            for member_send in list(members):
                # A member that left a moment ago is skipped; the others still get the text.
                with contextlib.suppress(Exception):
                    await member_send({"type": "websocket.send", "text": message.get("text") or ""})
    finally:
        members.discard(send)


async def answer_lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
