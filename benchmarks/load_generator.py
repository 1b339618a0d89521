"""The load generator: a process of its own that drives one server under test over loopback
and prints what it measured as one JSON object on stdout.

    python load_generator.py http URL --connections 10
    python load_generator.py echo WS_URL --clients 50
    python load_generator.py broadcast WS_URL [WS_URL ...] --clients 100

Every mode runs a warm-up whose samples are thrown away, then several repetitions, and
reports each repetition on its own (run_benchmark.py takes the medians). It is a separate
process from the server so the two do not share an interpreter, a GIL or an event loop.
"""

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

from websockets.asyncio.client import connect

# Open this many connections at a time: Twisted (daphne) listens with a backlog of 50.
CONNECT_BATCH = 25
# Step 06's refusal of a message the room is too busy for, and how a round answers it.
BUSY = "the room is busy"
BUSY_RESENDS = 20
BUSY_PAUSE = 0.25  # seconds


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list."""
    index = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summary(seconds_per_sample, elapsed, units_per_sample=1):
    """One repetition: how many per second, and the 50th and 99th percentile in milliseconds."""
    if not seconds_per_sample:
        raise RuntimeError("a repetition finished no request at all: the server is stuck")
    ordered = sorted(seconds_per_sample)
    return {
        "count": len(ordered),
        "seconds": elapsed,
        "rate": len(ordered) * units_per_sample / elapsed,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
    }


class Phases:
    """Where a finished sample goes: nowhere during the warm-up, to its own list during each
    repetition. The workers keep running across phases, so no repetition starts cold."""

    def __init__(self):
        self.samples = None
        self.running = True

    def record(self, seconds):
        if self.samples is not None:
            self.samples.append(seconds)

    async def run(self, warmup, duration, repetitions, workers):
        repetitions_done = []
        try:
            await self._sleep_watching(warmup, workers)
            for _ in range(repetitions):
                self.samples = []
                started = time.perf_counter()
                await self._sleep_watching(duration, workers)
                elapsed = time.perf_counter() - started
                repetitions_done.append(summary(self.samples, elapsed))
                self.samples = None
        finally:
            self.running = False
        await asyncio.gather(*workers)
        return repetitions_done

    @staticmethod
    async def _sleep_watching(seconds, workers):
        """Sleeps, but a worker that fails ends the run at once with its error."""
        done, _ = await asyncio.wait(workers, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()


# --- HTTP -------------------------------------------------------------------------------


async def http_get(url, timeout):
    """One GET on a connection of its own, the way `ab` without -k measures. Keep-alive would
    measure TCP instead of the servers: runserver writes the headers and the body in two
    packets, and a client that reuses the connection then waits for Linux's 40 ms delayed ACK
    before the second one arrives, on every request."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            (
                f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "User-Agent: benchmark-load-generator\r\nAccept: text/html\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        body = await asyncio.wait_for(reader.read(), timeout)  # to the end of the connection
        if not body:
            raise RuntimeError(f"GET {url} answered {status} with an empty body")
        return status
    finally:
        writer.close()


async def http_worker(url, phases, timeout):
    while phases.running:
        started = time.perf_counter()
        status = await http_get(url, timeout)
        if status != 200:
            raise RuntimeError(f"GET {url} answered {status}")
        phases.record(time.perf_counter() - started)


async def measure_http(args):
    phases = Phases()
    workers = [
        asyncio.create_task(http_worker(args.urls[0], phases, args.timeout))
        for _ in range(args.connections)
    ]
    return await phases.run(args.warmup, args.duration, args.repetitions, workers)


# --- WebSocket --------------------------------------------------------------------------


def origin_of(ws_url):
    """The Origin a browser on the same server would send; the steps refuse a missing one."""
    parts = urlsplit(ws_url)
    return f"http://{parts.netloc}"


async def open_websockets(urls, count, timeout):
    """`count` open WebSockets, spread round-robin over `urls`, opened in small batches."""
    sockets = []
    for first in range(0, count, CONNECT_BATCH):
        batch = range(first, min(count, first + CONNECT_BATCH))
        sockets += await asyncio.gather(
            *(
                connect(
                    urls[i % len(urls)],
                    origin=origin_of(urls[i % len(urls)]),
                    open_timeout=timeout,
                    # Servers differ in compression support: measure them all without it.
                    compression=None,
                    max_queue=None,
                )
                for i in batch
            )
        )
    return sockets


async def echo_worker(websocket, client, phases, timeout):
    number = 0
    while phases.running:
        token = f"echo {client} {number}"
        started = time.perf_counter()
        await websocket.send(token)
        reply = await asyncio.wait_for(websocket.recv(), timeout)
        if reply != token:
            raise RuntimeError(f"sent {token!r}, the echo was {reply!r}")
        phases.record(time.perf_counter() - started)
        number += 1


async def measure_echo(args):
    sockets = await open_websockets(args.urls, args.clients, args.timeout)
    phases = Phases()
    try:
        workers = [
            asyncio.create_task(echo_worker(websocket, client, phases, args.timeout))
            for client, websocket in enumerate(sockets)
        ]
        return await phases.run(args.warmup, args.duration, args.repetitions, workers)
    finally:
        await asyncio.gather(*(websocket.close() for websocket in sockets))


class Round:
    """One broadcast message: when it was sent, and how many clients still wait for it."""

    def __init__(self, token, clients):
        self.token = token
        self.waiting = clients
        self.all_arrived = asyncio.Event()
        self.sent_at = self.finished_at = None
        self.refusal = None

    def arrived(self, message):
        # Step 06 answers a message it does not take with a refusal naming it (its text
        # included): that is the end of the round, and of the measurement.
        if '"refused"' in message:
            self.refusal = message
            self.all_arrived.set()
            return
        self.waiting -= 1
        if self.waiting == 0:
            self.finished_at = time.perf_counter()
            self.all_arrived.set()


async def broadcast_reader(websocket, current):
    async for message in websocket:
        round_ = current[0]
        if round_ is not None and round_.token in message:
            round_.arrived(message)


async def broadcast_round(sender, current, token, clients, template, timeout):
    """Seconds until every client has `token`'s message. A message step 06 refuses because
    the room is busy is sent again a moment later, as the refusal asks (a loaded machine makes
    a server busy even for one message at a time), and the round is timed from that send."""
    for attempt in range(BUSY_RESENDS + 1):
        sent = token if attempt == 0 else f"{token}-again-{attempt}"
        round_ = current[0] = Round(sent, clients)
        round_.sent_at = time.perf_counter()
        await sender.send(template.replace("TOKEN", sent))
        try:
            await asyncio.wait_for(round_.all_arrived.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(
                f"{round_.waiting} of {clients} clients never got message {sent!r}"
            ) from None
        current[0] = None
        if not round_.refusal:
            return round_.finished_at - round_.sent_at
        if BUSY not in round_.refusal:
            break
        await asyncio.sleep(BUSY_PAUSE)
    raise RuntimeError(f"the server refused message {sent!r}: {round_.refusal}")


async def measure_broadcast(args):
    """Rounds one after the other: one client sends, and the round ends when every client
    (the sender too, as a chat room echoes to everyone) has received that message. Each round
    is sent by the next client in turn: step 06 refuses more than 30 messages at once from one
    socket (its flood control), and a room's messages come from many people anyway."""
    sockets = await open_websockets(args.urls, args.clients, args.timeout)
    current = [None]
    readers = [asyncio.create_task(broadcast_reader(ws, current)) for ws in sockets]
    try:
        # Let every connect() finish joining the room's group before the first message.
        await asyncio.sleep(args.settle)
        repetitions = []
        sent_so_far = 0
        for repetition in range(-1, args.repetitions):  # -1 is the warm-up
            rounds = args.warmup_rounds if repetition < 0 else args.rounds
            times = []
            for number in range(rounds):
                token = f"broadcast-{repetition}-{number}"
                sent_so_far += 1
                times.append(
                    await broadcast_round(
                        sockets[sent_so_far % len(sockets)],
                        current,
                        token,
                        args.clients,
                        args.message_template,
                        args.timeout,
                    )
                )
            if repetition >= 0:
                repetitions.append(summary(times, sum(times), units_per_sample=args.clients))
        return repetitions
    finally:
        await asyncio.gather(*(websocket.close() for websocket in sockets))
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


def run_event_loop(coroutine):
    """uvloop when it is installed (uvicorn[standard] brings it): the cheaper each client is,
    the more of the machine is left for the server under test."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["http", "echo", "broadcast"])
    parser.add_argument("urls", nargs="+", help="broadcast spreads its clients over all of them")
    parser.add_argument("--connections", type=int, default=10, help="http: requests at a time")
    parser.add_argument("--clients", type=int, default=1, help="echo, broadcast: WebSockets")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds thrown away first")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per repetition")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10, help="broadcast: messages per repetition")
    parser.add_argument("--warmup-rounds", type=int, default=3)
    parser.add_argument(
        "--settle", type=float, default=0.5, help="broadcast: seconds after connecting"
    )
    parser.add_argument(
        "--message-template",
        default='{"message": "TOKEN"}',
        help="broadcast: the frame a client sends, TOKEN replaced by a unique word",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for any one answer")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    measure = {"http": measure_http, "echo": measure_echo, "broadcast": measure_broadcast}
    repetitions = run_event_loop(measure[args.mode](args))
    json.dump({"mode": args.mode, "urls": args.urls, "repetitions": repetitions}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
