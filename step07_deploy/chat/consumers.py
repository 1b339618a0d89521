"""The chat consumer: each socket joins its room's group; a message one socket sends is
stored first, then sent to the whole group, with its id. A socket that joins gets the room's
recent history, and any socket may ask for what it missed: {"after": <id>}. A message sent
again with the same "ref" is stored once (chat/resends.py). Messages are stored, in bursts, by
this process's writer (chat/message_writer.py); when the process is behind, a message is refused
at once as busy (chat/busy_room.py) instead of being accepted and delivered late.
https://channels.readthedocs.io/en/stable/tutorial/part_3.html
"""

import json
import logging
from urllib.parse import parse_qs

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from chat.busy_room import DeliveryLag, busy_reason
from chat.flood_control import BURST, RATE, TokenBucket
from chat.history import history_on_join, messages_after
from chat.message_writer import Waiting, message_writer
from chat.outbox import Outbox
from chat.rooms import group_name, room_name_problem

MAX_MESSAGE_LENGTH = 2000  # characters of message text, as typed
# A bound on the whole frame, checked before it is parsed: room for the longest text even if
# every character is JSON-escaped ("\ud83d\ude00" is 12 characters for one), plus a ref.
MAX_FRAME_LENGTH = 30000
MAX_REF_LENGTH = 100
# Close codes: RFC 6455's 1008 ("policy violation") and 1011 ("internal error") moved into
# 4000-4999, the range every server lets an application send (daphne allows no 1xxx but 1000).
BAD_ROOM_NAME = 4008
CHAT_FAILED = 4011

# What sending raises once the client has gone: Uvicorn's ClientDisconnected is an OSError;
# Daphne's WebSocket library, autobahn (installed with daphne), raises its Disconnected when
# the client's close frame has come in but the connection is not down yet.
CLIENT_GONE = (OSError, Disconnected)

logger = logging.getLogger(__name__)


class ChatConsumer(AsyncWebsocketConsumer):
    group_name = None
    outbox = None

    async def __call__(self, scope, receive, send):
        # If the consumer fails (most often: the channel layer lost Redis), tell the client
        # why and close with CHAT_FAILED, instead of leaving the server to drop the socket.
        try:
            await super().__call__(scope, receive, send)
        except Exception as error:
            await self.chat_failed(error)
        finally:
            if self.outbox:  # its task sends to this socket only
                self.outbox.close()

    async def dispatch(self, message):
        """Runs the handler of `message`, as Channels does, without the thread hop Channels 4
        makes first (`aclose_old_connections`, for handlers that use Django's async ORM). These
        handlers never touch the database themselves: the history and catch-up answers go
        through database_sync_to_async, which closes old connections around each call, and the
        writer has its own connection. In a busy room that hop was one per message and socket,
        all queued on one thread; a handler that used the async ORM would need it back."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f'No handler for message type {message["type"]}')
        await handler(message)

    async def chat_failed(self, error):
        """Says why the chat stopped and closes with CHAT_FAILED; the writer calls it too, when
        it cannot send a message this socket sent to the room."""
        log_failure(self.scope['url_route']['kwargs'].get('room_name'), error)
        if self.outbox:  # nothing queued is sent after the close
            self.outbox.close()
        reason = f'the chat stopped working ({type(error).__name__}): reconnect to try again'
        try:
            await self.base_send({'type': 'websocket.send', 'text': json.dumps({'error': reason})})
            await self.base_send({'type': 'websocket.close', 'code': CHAT_FAILED})
        except Exception:
            pass  # the client has gone already: nobody is left to tell

    async def connect(self):
        self.room_name = self.scope['url_route']['kwargs']['room_name']
        problem = room_name_problem(self.room_name)
        if problem:
            # Accept only to say why, then close: a browser never learns why a handshake failed.
            await self.accept()
            await self.send_json({'error': problem})
            await self.close(code=BAD_ROOM_NAME)
            return
        self.frames_received = 0
        self.flood_control = TokenBucket()
        self.writer = message_writer()
        self.delivery_lag = DeliveryLag()
        self.own_frames = {}  # message id -> ref, for this socket's messages the writer stored
        # Everything from now on is sent through the outbox, in order, by a task of its own.
        self.outbox = Outbox(self.room_name, self.send_now, self.chat_failed)
        self.group_name = group_name(self.room_name)
        try:
            # Join first, then read the history: a message stored in between arrives twice
            # (the page keeps one), but none falls between the two.
            await self.channel_layer.group_add(self.group_name, self.channel_name)
        finally:
            # Accept even if joining failed, so that the failure can be told on the socket.
            await self.accept()
        after = after_in_query(self.scope['query_string'])
        history, newest_id = await database_sync_to_async(history_on_join)(self.room_name, after)
        for message in history:
            self.outbox.queue(json.dumps(message))
        # The history is all sent: the page is in the room now, and sends what it still owes.
        self.outbox.queue(json.dumps({'joined': self.room_name, 'newest_id': newest_id}))
        self.outbox.newest_id = newest_id

    async def disconnect(self, code):
        if self.group_name:
            await self.channel_layer.group_discard(self.group_name, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        self.frames_received += 1  # every frame counts: a refusal names its message by number
        content, problem = read_frame(text_data)
        if problem:
            await self.refuse(problem, content)
        elif 'after' in content:
            after = content['after']
            self.outbox.queue_answer(
                lambda: database_sync_to_async(messages_after)(self.room_name, after)
            )
        elif not self.flood_control.take():
            await self.refuse_unless_stored(
                f'too many messages: at most {BURST} at once and {RATE} a second; '
                f'message {self.frames_received} was not sent',
                content,
            )
        elif busy := busy_reason(self.writer, self.delivery_lag, self.frames_received):
            await self.refuse_unless_stored(busy, content)
        else:
            # Stored before it is sent: the writer stores it, then sends it to the room (or,
            # for a ref the room holds already, the stored copy to this socket only).
            self.writer.submit(Waiting(
                self.room_name, content['message'], self.scope['user'], content.get('ref'),
                self.frames_received, self,
            ))

    async def refuse_unless_stored(self, problem, content):
        """Refuses a message, unless it is a resend of one stored already: that one costs the
        room nothing, and telling its sender "not sent" would be false. A message with a ref is
        looked up by the writer, with the other refs of its burst."""
        if content.get('ref') is None:
            await self.refuse(problem, content)
        else:
            self.writer.submit(Waiting(
                self.room_name, content['message'], self.scope['user'], content['ref'],
                self.frames_received, self, refusal=problem,
            ))

    async def refuse(self, problem, content, number=None):
        """Tells the sender that its frame was not taken, naming it by number, and by its text
        and ref when it had them, so that the sender knows which of its messages it was."""
        content = content if isinstance(content, dict) else {}
        text, ref = content.get('message'), content.get('ref')
        await self.send_json({
            'error': problem,
            'refused': {
                'message': text if isinstance(text, str) else None,
                'ref': ref if is_ref(ref) else None,
                'number': number or self.frames_received,
            },
        })

    async def not_stored(self, waiting, error):
        """The writer could not store `waiting`, a message this socket sent."""
        await self.refuse(
            f'message {waiting.number} was not stored ({type(error).__name__}): send it again',
            {'message': waiting.text, 'ref': waiting.ref},
            number=waiting.number,
        )

    async def chat_messages(self, event):
        """Handles the 'chat.messages' events the writer sends: a room's newly stored messages,
        each frame already encoded, one per line, and their ids. This socket's own messages
        are encoded again, with the ref it gave them."""
        self.delivery_lag.observe(event['stored_at'])
        frames = event['frames'].split('\n')
        for message_id, text in zip(map(int, event['ids'].split()), frames, strict=True):
            ref = self.own_frames.pop(message_id, None) if self.own_frames else None
            if ref is None:
                self.outbox.queue_room_message(text, message_id)
            else:
                self.outbox.queue(json.dumps({**json.loads(text), 'ref': ref}), message_id)

    async def chat_message(self, event):
        """Handles the group's 'chat.message' events: one per message sent to the room."""
        message = event['message']
        if event.get('sender') == self.channel_name and event.get('ref') is not None:
            message = {**message, 'ref': event['ref']}  # the sender learns which one it was
        self.outbox.queue_room_message(json.dumps(message), message['id'])

    async def send_json(self, content):
        """Sends an answer to this socket (a refusal, a resend's stored copy) after what is
        queued for it (chat/outbox.py)."""
        if self.outbox:
            self.outbox.queue(json.dumps(content))
        else:  # a socket refused at connect: nothing else is sent on it
            await self.send_now(json.dumps(content))

    async def send_now(self, text):
        try:
            await self.send(text_data=text)
        except CLIENT_GONE:
            # Carry on (once the connection is down, Daphne drops the frame itself): the frames
            # the client sent before leaving still get stored, and its websocket.disconnect,
            # which comes last, takes the socket out of the room.
            pass


def read_frame(text_data):
    """(content, None) for a chat message {"message": "<text>", "ref": <optional>} or a
    catch-up request {"after": <id>}; (what could be read, why) for anything else."""
    if text_data is None:
        return None, 'send text frames, not binary ones'
    if len(text_data) > MAX_FRAME_LENGTH:
        return None, f'frame too long: {len(text_data)} characters, at most {MAX_FRAME_LENGTH}'
    try:
        content = json.loads(text_data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep, like [[[[...]]]]
        return None, 'not JSON: send {"message": "<text>"}'
    if isinstance(content, dict) and 'after' in content:
        if not is_message_id(content['after']):
            return content, '"after" takes the id of the last message you have, such as 0'
        return content, None
    if not isinstance(content, dict) or not isinstance(content.get('message'), str):
        return content, 'no "message" text: send {"message": "<text>"}'
    if 'ref' in content and not is_ref(content['ref']):
        return content, f'"ref" is a string or number of at most {MAX_REF_LENGTH} characters'
    if len(content['message']) > MAX_MESSAGE_LENGTH:
        length = len(content['message'])
        return content, f'message too long: {length} characters, at most {MAX_MESSAGE_LENGTH}'
    try:
        content['message'].encode('utf-8')
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800", which Redis cannot carry
        return content, 'the message is not valid Unicode text'
    return content, None


def after_in_query(query_string):
    """The id in ?after=<id> of the socket's URL (a page that reconnects), or None."""
    values = parse_qs(query_string.decode('latin-1')).get('after', [])
    return int(values[0]) if values and values[0].isdigit() else None


def is_message_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_ref(value):
    """A ref: a client's own id for its message, a short string or a number (null: none)."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return False
    return len(str(value)) <= MAX_REF_LENGTH


# Causes (exception type and message) whose traceback this process has logged. An outage fails
# every socket, and every page's every try, in the same way: one traceback tells it all.
causes_logged = set()
MOST_CAUSES_LOGGED = 100  # past that many different ones, log only the one-line summaries


def log_failure(room, error):
    """One line per failing socket, with the cause; the traceback once per cause."""
    cause = f'{type(error).__name__}: {error}'
    first_time = cause not in causes_logged and len(causes_logged) < MOST_CAUSES_LOGGED
    if first_time:
        causes_logged.add(cause)
    logger.error(
        'chat socket in room %s stopped: %s%s',
        room,
        cause,
        '' if first_time else ' (traceback logged for the first socket it stopped)',
        exc_info=error if first_time else None,
    )
