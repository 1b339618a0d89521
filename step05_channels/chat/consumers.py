"""The chat consumer: each socket joins its room's group, and a message one socket sends is
sent to the whole group, on every server process that shares the channel layer.
https://channels.readthedocs.io/en/stable/tutorial/part_3.html
"""

import json

from channels.generic.websocket import AsyncWebsocketConsumer

from chat.rooms import group_name, room_name_problem

MAX_MESSAGE_LENGTH = 2000  # characters in one frame; longer ones are refused unread
# Close code: RFC 6455's 1008 ("policy violation") moved into 4000-4999, the range every
# server lets an application send (daphne allows no 1xxx but 1000).
BAD_ROOM_NAME = 4008


class ChatConsumer(AsyncWebsocketConsumer):
    group_name = None

    async def connect(self):
        room_name = self.scope['url_route']['kwargs']['room_name']
        problem = room_name_problem(room_name)
        if problem:
            # Accept only to say why, then close: a browser never learns why a handshake failed.
            await self.accept()
            await self.send_json({'error': problem})
            await self.close(code=BAD_ROOM_NAME)
            return
        self.group_name = group_name(room_name)
        # Join first, so that a client who sees its socket open already hears the room.
        await self.channel_layer.group_add(self.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        problem = message_problem(text_data)
        if problem:
            await self.send_json({'error': problem})
            return
        message = json.loads(text_data)['message']
        await self.channel_layer.group_send(
            self.group_name, {'type': 'chat.message', 'message': message}
        )

    async def chat_message(self, event):
        """Handles the group's 'chat.message' events: one per message sent to the room."""
        await self.send_json({'message': event['message']})

    async def send_json(self, content):
        await self.send(text_data=json.dumps(content))


def message_problem(text_data):
    """Why a frame is not a chat message, or None if it is one: {"message": "<text>"}."""
    if text_data is None:
        return 'send text frames, not binary ones'
    if len(text_data) > MAX_MESSAGE_LENGTH:
        return f'message too long: {len(text_data)} characters, at most {MAX_MESSAGE_LENGTH}'
    try:
        content = json.loads(text_data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep, like [[[[...]]]]
        return 'not JSON: send {"message": "<text>"}'
    if not isinstance(content, dict) or not isinstance(content.get('message'), str):
        return 'no "message" text: send {"message": "<text>"}'
    try:
        content['message'].encode('utf-8')
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800", which Redis cannot carry
        return 'the message is not valid Unicode text'
    return None
