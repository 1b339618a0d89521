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
from django.db import connection

from chat.busy_room import LoopLag
from chat.history import store_messages
from chat.rooms import group_name

MAX_BURST = 200  # messages stored in one transaction at most; the rest wait for the next one

logger = logging.getLogger(__name__)


@dataclass
class Waiting:
    """A message a consumer accepted, waiting to be stored."""

    room: str
    text: str
    author: str
    ref: object  # the sender's ref, sent back on the sender's own copy only
    number: int  # which frame of its socket it was, for a refusal
    consumer: object  # the sender's consumer, told if the message cannot be stored or sent
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
                    frames = await loop.run_in_executor(
                        self.thread, store_here, [(w.room, w.text, w.author) for w in burst]
                    )
                except Exception as error:
                    logger.exception('storing %d messages failed', len(burst))
                    for waiting in burst:
                        await waiting.consumer.not_stored(waiting, error)
                    continue
                finally:
                    self.storing = []
                await send_to_rooms(burst, frames)


def store_here(messages):
    """In the writer's thread: its connection stays open from one burst to the next."""
    try:
        return store_messages(messages)
    except Exception:
        connection.close()  # the next burst starts on a fresh connection
        raise


async def send_to_rooms(burst, frames):
    """One group event per room for the burst: its frames, encoded, in id order, joined into
    one string (JSON text holds no raw newline). One string because the in-memory layer
    deep-copies an event for every socket in the group, item by item, and Redis packs it: a
    list of a hundred frames costs a hundred times more to copy than one string. Which frames
    go back to their sender with its ref, the writer tells the sender's consumer itself (it is
    in this process), so that the event is the same for everyone."""
    rooms = {}
    for waiting, frame in zip(burst, frames, strict=True):
        ids, texts = rooms.setdefault(waiting.room, ([], []))
        if waiting.ref is not None:
            waiting.consumer.own_frames[frame['id']] = waiting.ref
        ids.append(str(frame['id']))
        texts.append(json.dumps(frame))
    layer = get_channel_layer()
    for room, (ids, texts) in rooms.items():
        event = {
            'type': 'chat.messages',
            'ids': ' '.join(ids),
            'frames': '\n'.join(texts),
            'stored_at': time.time(),
        }
        try:
            await layer.group_send(group_name(room), event)
        except Exception as error:
            # Stored but not sent (Redis gone): each sender's consumer stops as it would have
            # if its own group_send had failed; its page reconnects and catches up.
            logger.exception('sending to room %s failed', room)
            senders = {w.consumer for w in burst if w.room == room}
            await asyncio.gather(*(consumer.chat_failed(error) for consumer in senders))


writers = weakref.WeakKeyDictionary()  # event loop -> its writer


def message_writer():
    """This process's writer (one per event loop: a test may run several loops in turn)."""
    loop = asyncio.get_running_loop()
    if loop not in writers:
        writers[loop] = MessageWriter()
    return writers[loop]
