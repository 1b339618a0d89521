"""One writer per server process: the consumers hand it the messages to store, and it stores
everything waiting in one transaction, then sends each room its new messages in one group
event, every frame encoded to JSON once.

Storing each message on its own, from its consumer, costs a commit each, a thread hop each
(database_sync_to_async) and a database connection opened and closed each (Django's
CONN_MAX_AGE 0, which its docs ask for under ASGI). The writer pays those once per burst: its
thread keeps one connection open for as long as the process runs, and nothing else uses that
thread. A consumer does not wait for its message to be stored: it goes on reading its socket,
so how long messages wait here says how far behind this process is (chat/busy_room.py).
https://docs.python.org/3/library/asyncio-eventloop.html#executing-code-in-thread-or-process-pools
"""

import asyncio
import collections
import json
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from channels.layers import get_channel_layer
from django.db import IntegrityError, connection

from chat.busy_room import LoopLag
from chat.history import store_messages
from chat.models import Message
from chat.resends import store_once, stored_with_ref
from chat.rooms import group_name

MAX_BURST = 200  # messages stored in one transaction at most; the rest wait for the next one
# Characters of frames in one group event at most: a burst of long messages goes out as several
# events. Every socket's consumer gets its own copy of an event (Redis sends one to each), so
# the size of one event, times the sockets of a process, is memory the process needs at once.
MAX_EVENT_LENGTH = 64 * 1024

logger = logging.getLogger(__name__)


@dataclass
class Waiting:
    """A message a consumer accepted, waiting to be stored; or, with `refusal`, one it refuses
    unless the room holds its ref already (a resend is answered with the stored copy: "not
    sent" would be false). The writer looks those up with its burst's own, in one query,
    instead of one look-up and one thread hop each when the room is busiest."""

    room: str
    text: str
    user: object  # who sent it (scope['user']): the message is stored under their name
    ref: object  # the sender's id for it, sent back on the sender's own copy only
    number: int  # which frame of its socket it was, for a refusal
    consumer: object  # the sender's consumer, told if the message cannot be stored or sent
    refusal: str = None  # why it is refused, unless it is a resend
    accepted_at: float = field(default_factory=time.monotonic)


class MessageWriter:
    def __init__(self):
        self.waiting = collections.deque()
        self.storing = []  # the burst in the transaction now
        self.wake = asyncio.Event()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix='chat-writer')
        self.task = asyncio.get_running_loop().create_task(self.run())
        self.loop_lag = LoopLag()  # the loop this writer runs on: how late it runs

    def submit(self, waiting):
        self.waiting.append(waiting)
        self.wake.set()

    def oldest_wait(self):
        """Seconds the oldest message not stored yet has been waiting (0 when none is)."""
        oldest = self.storing[0] if self.storing else (self.waiting[0] if self.waiting else None)
        return 0.0 if oldest is None else time.monotonic() - oldest.accepted_at

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.waiting:
                burst = [self.waiting.popleft() for _ in range(min(MAX_BURST, len(self.waiting)))]
                self.storing = burst
                try:
                    answers = await loop.run_in_executor(
                        self.thread,
                        store_here,
                        [(w.room, w.text, w.user, w.ref, w.refusal) for w in burst],
                    )
                except Exception as error:
                    logger.exception('storing %d messages failed', len(burst))
                    for waiting in burst:
                        await tell(waiting.consumer.not_stored(waiting, error))
                    continue
                finally:
                    self.storing = []
                await send_to_rooms(burst, answers)


async def tell(answer):
    """Awaits an answer to one sender. A socket that has closed meanwhile raises (Uvicorn:
    "Unexpected ASGI message ... after sending 'websocket.close'"): that one answer is lost,
    and the writer, which every socket of the process needs, carries on."""
    try:
        await answer
    except Exception:
        logger.exception('could not answer a sender')


def store_here(burst):
    """In the writer's thread: its connection stays open from one burst to the next."""
    try:
        return store_once_each(burst)
    except Exception:
        connection.close()  # the next burst starts on a fresh connection
        raise


def store_once_each(burst):
    """For each message of the burst, [(room, text, user, ref, refusal)]: (frame, True) if it is
    stored now, all of them in one INSERT; (the stored frame, False) for a resend: a ref the
    room holds already, or one twice in the burst (chat/resends.py's rule, for a burst); and
    (None, False) for a message to refuse whose ref the room does not hold."""
    first_with_ref = {}  # (room, ref) -> index of the first message of the burst to store it
    to_store = []
    for index, (room, _, _, ref, refusal) in enumerate(burst):
        key = ref_key(room, ref)
        if refusal is None and (key is None or key not in first_with_ref):
            to_store.append(index)
            if key is not None:
                first_with_ref[key] = index
    held = already_stored({ref_key(room, ref) for room, _, _, ref, _ in burst} - {None})
    to_store = [i for i in to_store if ref_key(burst[i][0], burst[i][3]) not in held]
    try:
        frames = to_store and store_messages([
            (room, text, user, str(ref) if ref_key(room, ref) else '')
            for room, text, user, ref, _ in (burst[i] for i in to_store)
        ])
    except IntegrityError:
        # Another process stored one of these refs since the look-up: one at a time, then, as
        # chat/resends.py settles that race.
        return [
            store_once(room, text, user, ref) if refusal is None
            else (stored_with_ref(room, ref), False)
            for room, text, user, ref, refusal in burst
        ]
    answers = dict(zip(to_store, ((frame, True) for frame in frames), strict=True))
    for index, (room, _, _, ref, _) in enumerate(burst):
        if index not in answers:
            key = ref_key(room, ref)
            if key in held:
                answers[index] = (held[key], False)
            elif key in first_with_ref:
                answers[index] = (answers[first_with_ref[key]][0], False)
            else:
                answers[index] = (None, False)  # refused: the room does not hold it
    return [answers[index] for index in range(len(burst))]


def ref_key(room, ref):
    """What makes a message the same one sent again: its room and ref (None without a ref)."""
    return None if ref is None or str(ref) == '' else (room, str(ref))


def already_stored(keys):
    """{(room, ref): its stored frame} for those of `keys` the database holds."""
    refs_by_room = collections.defaultdict(list)
    for room, ref in keys:
        refs_by_room[room].append(ref)
    held = {}
    for room, refs in refs_by_room.items():
        for ref in Message.objects.filter(room=room, ref__in=refs).values_list('ref', flat=True):
            held[(room, ref)] = stored_with_ref(room, ref)
    return held


async def send_to_rooms(burst, answers):
    """One group event per room for the burst's new messages (several for a burst of long ones,
    see MAX_EVENT_LENGTH): their frames, encoded, in id order, joined into one string (JSON
    text holds no raw newline). One string because the in-memory layer deep-copies an event
    for every socket in the group, item by item, and Redis packs it: a list of a hundred
    frames costs a hundred times more to copy than one string.
    Which frames go back to their sender with its ref, the writer tells the sender's consumer
    itself (it is in this process), so that the event is the same for everyone. A resend is
    answered to its sender only."""
    rooms = {}
    for waiting, (frame, new) in zip(burst, answers, strict=True):
        if frame is None:
            content = {'message': waiting.text, 'ref': waiting.ref}
            await tell(waiting.consumer.refuse(waiting.refusal, content, number=waiting.number))
            continue
        if not new:
            await tell(waiting.consumer.send_json({**frame, 'ref': waiting.ref}))
            continue
        ids, texts = rooms.setdefault(waiting.room, ([], []))
        if waiting.ref is not None:
            waiting.consumer.own_frames[frame['id']] = waiting.ref
        ids.append(str(frame['id']))
        texts.append(json.dumps(frame))
    layer = get_channel_layer()
    for room, (ids, texts) in rooms.items():
        try:
            for first, last in events_of(texts):
                event = {
                    'type': 'chat.messages',
                    'ids': ' '.join(ids[first:last]),
                    'frames': '\n'.join(texts[first:last]),
                    'stored_at': time.time(),
                }
                await layer.group_send(group_name(room), event)
        except Exception as error:
            # Stored but not sent (Redis gone): each sender's consumer stops as it would have
            # if its own group_send had failed; its page reconnects and catches up.
            senders = {w.consumer for w in burst if w.room == room}
            await asyncio.gather(*(tell(consumer.chat_failed(error)) for consumer in senders))


def events_of(texts):
    """(first, last) index ranges of `texts` that make one event each: as many frames as fit in
    MAX_EVENT_LENGTH characters, and at least one."""
    first, length = 0, 0
    for index, text in enumerate(texts):
        if index > first and length + len(text) > MAX_EVENT_LENGTH:
            yield first, index
            first, length = index, 0
        length += len(text) + 1
    yield first, len(texts)


writers = weakref.WeakKeyDictionary()  # event loop -> its writer


def message_writer():
    """This process's writer (one per event loop: a test may run several loops in turn)."""
    loop = asyncio.get_running_loop()
    if loop not in writers:
        writers[loop] = MessageWriter()
    return writers[loop]
