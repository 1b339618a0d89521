"""When a room is sent more than this server process can store and deliver: the message is
refused at once, with the reason, instead of being accepted and delivered seconds late.

Three things say the process is behind, all measured here and now, in this process:
- reading: how late its event loop runs a timer (a loop that is late reads the sockets late,
  and every frame waits); Node's toobusy-js refuses work on this alone,
  https://github.com/STRML/node-toobusy
- storing: how long the oldest message has waited in the writer (chat/message_writer.py);
- delivering: how late this socket's consumer got the room's last messages. A consumer
  handles its socket's frames and the room's messages in turn, so when it is behind with the
  one, it is behind with the other. A socket that reads slowly holds up neither (its frames
  wait in its outbox, chat/outbox.py), so it is not refused for that.
Each process judges for itself, so with several processes behind Redis the one whose sockets
fall behind refuses its own senders.
"""

import asyncio
import logging
import time

LOOP_LAG_LIMIT = 0.1  # seconds the event loop may run late before new messages are refused
STORE_WAIT_LIMIT = 0.15  # seconds a message may wait to be stored before new ones are refused
DELIVERY_LAG_LIMIT = 0.15  # seconds from stored to this socket's consumer, past which it refuses
RECENT = 1.0  # seconds a delivery lag counts for: a quiet room is not behind
LOG_EVERY = 10.0  # seconds between two log lines saying that this process refuses messages

logger = logging.getLogger(__name__)
last_logged = [0.0]  # when this process last logged that it refuses messages


class DeliveryLag:
    """How late one socket's consumer got the room's last stored messages."""

    def __init__(self, clock=time.time):
        self.clock = clock  # wall clock: the time a message was stored comes from any process
        self.lag = 0.0
        self.observed_at = 0.0

    def observe(self, stored_at):
        self.observed_at = self.clock()
        self.lag = self.observed_at - stored_at

    def recent(self):
        """Seconds, or 0 when this consumer got nothing lately."""
        return self.lag if self.clock() - self.observed_at < RECENT else 0.0


class LoopLag:
    """How late the event loop ran a timer lately: a task asks to wake every TICK seconds."""

    TICK = 0.05

    def __init__(self):
        self.late = 0.0
        self.task = asyncio.get_running_loop().create_task(self.watch())

    async def watch(self):
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.TICK)
            self.late = loop.time() - asked - self.TICK


def busy_reason(writer, delivery_lag, number):
    """Why message `number` of a socket is refused because the room is busy, or None."""
    late, waited, lag = writer.loop_lag.late, writer.oldest_wait(), delivery_lag.recent()
    if late <= LOOP_LAG_LIMIT and waited <= STORE_WAIT_LIMIT and lag <= DELIVERY_LAG_LIMIT:
        return None
    # Whoever runs the server wants to know it turns messages away: a line now and then, not
    # one per message (an overload refuses hundreds a second).
    now = time.monotonic()
    if now - last_logged[0] > LOG_EVERY:
        last_logged[0] = now
        logger.warning(
            'busy: refusing new messages (event loop %.2f s late, oldest message waiting'
            ' %.2f s to be stored, a consumer %.2f s behind)', late, waited, lag,
        )
    return f'the room is busy: message {number} was not sent, send it again in a moment'
