"""What one socket is sent: queued here, in order, and sent by a task of the socket's own, so
that neither its consumer nor this process's writer ever waits on a client that reads slowly,
or has stopped reading (a laptop gone to sleep, a script that never reads).

Sending on a socket waits while its client is not reading: Uvicorn waits for the connection's
buffer to drain (Daphne buffers without end instead). Awaited in the consumer, that wait stops
the consumer, and the channel layer keeps the room's events for it meanwhile, up to its
capacity: 100 events, each a burst of up to 200 messages. Awaited in the writer, it would stop
every socket of the process.

What the queue holds is bounded, and nothing is lost by the bound, since every message is stored:
- other people's messages: while more than QUEUED_LIMIT characters wait and the client is not
  reading (a send has waited STALLED_AFTER seconds for it), new ones are left out; past
  HARD_LIMIT, whatever it is doing. Once the queue has emptied, the socket gets a "joined"
  frame naming the newest id it was sent or left out, and the page asks for what it lacks
  ({"after": <id>}), as it does after a gap.
- the answers to this socket: the copies of its own messages, its refusals (flood control keeps
  those to 12 a second), the history on joining and the answers to {"after": <id>}: always sent.
  An answer to {"after": <id>} is read from the database when its turn to be sent comes, one
  at a time; asking again while one answer waits adds nothing.
A client that keeps reading gets every frame in order; one that reads nothing costs at most
about QUEUED_LIMIT characters (what the room sends it in STALLED_AFTER seconds past that,
HARD_LIMIT at most), plus one answer.
"""

import asyncio
import collections
import json
import time

QUEUED_LIMIT = 1024 * 1024  # characters waiting, past which a client that is not reading...
STALLED_AFTER = 0.5  # ...(its current send has waited this many seconds) is left out of the room
HARD_LIMIT = 8 * QUEUED_LIMIT  # characters waiting, past which it is left out in any case


class Outbox:
    def __init__(self, room, send, failed):
        self.room = room
        self.send = send  # the consumer's send of one text frame
        self.failed = failed  # told when an answer cannot be read (the database gone)
        self.frames = collections.deque()  # (text, or a coroutine function for an answer)
        self.queued = 0  # characters of text waiting in self.frames
        self.answer_waiting = False
        self.newest_id = None  # the newest message id queued or left out
        self.left_out = 0  # frames left out since the queue was last empty
        self.sending_since = None  # when the send under way began (None: no send under way)
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self.run())

    def queue(self, text, message_id=None):
        """Queues an answer to this socket: never left out."""
        if message_id is not None:
            self.newest_id = max(self.newest_id or 0, message_id)
        self.frames.append(text)
        self.queued += len(text)
        self.ready.set()

    def queue_room_message(self, text, message_id):
        """Queues another socket's message, unless too much waits for a client not reading."""
        if self.queued + len(text) > (QUEUED_LIMIT if self.stalled() else HARD_LIMIT):
            self.newest_id = max(self.newest_id or 0, message_id)
            self.left_out += 1
            return
        self.queue(text, message_id)

    def stalled(self):
        """Whether the send under way has waited STALLED_AFTER seconds: the client is not
        reading. (A client that reads takes even a long history in a moment.)"""
        return (
            self.sending_since is not None
            and time.monotonic() - self.sending_since > STALLED_AFTER
        )

    def queue_answer(self, read_frames):
        """Queues the answer to a catch-up request: `read_frames()` is awaited when its turn
        comes, and returns the frames to send."""
        if self.answer_waiting:
            return  # the answer waiting will be read later, and will hold what this one would
        self.answer_waiting = True
        self.frames.append(read_frames)
        self.ready.set()

    async def run(self):
        try:
            await self.send_all()
        except Exception as error:
            await self.failed(error)

    async def send_all(self):
        while True:
            await self.ready.wait()
            while self.frames:
                item = self.frames.popleft()
                if isinstance(item, str):
                    self.queued -= len(item)
                    await self.timed_send(item)
                    continue
                self.answer_waiting = False
                for frame in await item():
                    await self.timed_send(json.dumps(frame))
            self.ready.clear()
            if self.left_out:
                # Caught up with what was queued: say how far the room has got.
                self.left_out = 0
                self.queue(json.dumps({'joined': self.room, 'newest_id': self.newest_id}))

    async def timed_send(self, text):
        self.sending_since = time.monotonic()
        await self.send(text)
        self.sending_since = None

    def close(self):
        """Sends nothing more (called from the task itself, it ends with what it is doing)."""
        if self.task is not asyncio.current_task():
            self.task.cancel()
