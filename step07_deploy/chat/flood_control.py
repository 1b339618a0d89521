"""Flood control for one socket: a token bucket. A socket may send BURST messages back to
back, and RATE a second for as long as it likes; past that, a message is refused (and the
sender told which one), instead of filling everybody's page.
https://en.wikipedia.org/wiki/Token_bucket
"""

import time

BURST = 30
RATE = 12  # messages a second, sustained


class TokenBucket:
    def __init__(self, capacity=BURST, per_second=RATE, clock=time.monotonic):
        self.capacity = capacity
        self.per_second = per_second
        self.clock = clock
        self.tokens = capacity
        self.updated = clock()

    def take(self):
        """True if one more message may go now (and counts it), False if it must be refused."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
