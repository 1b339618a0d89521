"""The echo of step 04 as a Channels consumer: Channels reads the ASGI messages and calls
connect(), receive() and disconnect(), so only the echo itself is left to write.
https://channels.readthedocs.io/en/stable/topics/consumers.html
"""

from channels.generic.websocket import AsyncWebsocketConsumer

MAX_MESSAGE_BYTES = 64 * 1024  # the same limit as step 04
MESSAGE_TOO_BIG = 1009  # the WebSocket close code for it (RFC 6455, section 7.4.1)


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        # A frame carries either text (str) or bytes, and is echoed as the same kind.
        size = len(text_data.encode()) if text_data is not None else len(bytes_data)
        if size > MAX_MESSAGE_BYTES:
            await self.close(code=MESSAGE_TOO_BIG)
        else:
            await self.send(text_data=text_data, bytes_data=bytes_data)
