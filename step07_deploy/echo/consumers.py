"""The echo of step 04 as a Channels consumer: Channels reads the ASGI messages and calls
connect(), receive() and disconnect(), so only the echo itself is left to write.
https://channels.readthedocs.io/en/stable/topics/consumers.html
"""

from channels.generic.websocket import AsyncWebsocketConsumer

MAX_MESSAGE_BYTES = 64 * 1024  # the same limit as step 04
MESSAGE_TOO_BIG = 1009  # the WebSocket close code for it (RFC 6455, section 7.4.1)
MESSAGE_TOO_BIG_PRIVATE_RANGE = 4009  # the same, where a server allows no 1xxx code but 1000


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        # A frame carries either text (str) or bytes, and is echoed as the same kind.
        size = len(text_data.encode()) if text_data is not None else len(bytes_data)
        if size > MAX_MESSAGE_BYTES:
            try:
                await self.close(code=MESSAGE_TOO_BIG)
            except Exception:  # Daphne: "must be 1000 or from [3000, 4999]"
                await self.close(code=MESSAGE_TOO_BIG_PRIVATE_RANGE)
        else:
            await self.send(text_data=text_data, bytes_data=bytes_data)
