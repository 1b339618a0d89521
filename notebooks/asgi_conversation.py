"""A hand-made `receive` and `send` pair for awaiting an ASGI application without a server.

Notebook 01 builds this up in the open; the later notebooks import it from here.
"""

import asyncio


class Conversation:
    """Feeds `incoming` messages to the app one by one, records and prints what it sends.

    After the last incoming message, `receive` waits forever, as a server does while the client
    is quiet, unless `then_disconnect` names a message to hand over instead.
    """

    def __init__(self, *incoming, then_disconnect=None, quiet=False):
        self.incoming = list(incoming)
        self.then_disconnect = then_disconnect
        self.quiet = quiet
        self.sent = []

    async def receive(self):
        if self.incoming:
            message = self.incoming.pop(0)
        elif self.then_disconnect:
            message = self.then_disconnect
        else:
            await asyncio.Event().wait()  # a quiet client: nothing more ever arrives
        if not self.quiet:
            print("app received:", message)
        return message

    async def send(self, message):
        if not self.quiet:
            print("app sent:    ", shortened(message))
        self.sent.append(message)

    def sent_types(self):
        return [message["type"] for message in self.sent]


def shortened(message, limit=60):
    """The message with a long body cut short, so a printed page stays readable."""
    message = dict(message)
    for key in ("body", "text", "bytes"):
        value = message.get(key)
        if value is not None and len(value) > limit:
            message[key] = value[:limit] + (b"..." if isinstance(value, bytes) else "...")
    if "headers" in message and len(message["headers"]) > 3:
        message["headers"] = message["headers"][:3] + [("...", "...")]
    return message
