"""The measured cause of every ratio above 1.5× in results.md, told from one run's figures.

Each paragraph reads the rows it explains (the HTTP, echo and broadcast tables) and the rows and
counts of benchmarks/thread_hops.py measured in the same run: the thread hops per request,
message or broadcast, the in-process time of the same work with no server and no socket, the
rows with each cause taken out, and the Redis commands per broadcast. Every paragraph says which
rows it covers, so `uncovered()` can name any ratio above the limit that nothing explains (the
tests require none), and the report ends with the list of them all.
"""

from benchmarks import thread_hops
from benchmarks.figures import (
    ASGI_SERVERS,
    BARE_ECHO,
    STEP04,
    STEP05_MEMORY,
    STEP05_REDIS,
    all_rows,
    find,
    floors,
    latency_ratio,
    milliseconds,
    number,
    time_per_message_ratio,
    times,
)

LIMIT = 1.5
TABLES = {"http": "HTTP", "echo": "echo", "broadcast": "broadcast"}
BROADCAST_MEMORY, BROADCAST_REDIS = "step 05, in-memory", "step 05, Redis"


# --- which ratios are above the limit ------------------------------------------------------


def key(table, row, column):
    """Names one ratio cell: the table, the row and the column it is in."""
    return (
        table,
        row["track"],
        row["subject"],
        row["server"],
        row["clients"],
        row.get("processes", 1),
        column,
    )


def ratio_cells(summary):
    """(key, the largest of the cell's ratios) for every ratio cell of results.md's tables."""
    rows = all_rows(summary)
    for row in rows:
        for column, floor in floors(rows, row).items():
            if floor is row:
                continue
            value = max(latency_ratio(row, floor), time_per_message_ratio(row, floor))
            yield key(TABLES[row["section"]], row, column), value
    for run in summary["tracks"]:
        hops = run.get("thread_hops")
        for row in hops["rows"] if hops else []:
            floor = thread_hops.floor_of(hops["rows"], row)
            if floor is not row:
                yield key("thread hops", row, "floor"), thread_hops.ratio(row, floor)


def above(summary, limit=LIMIT):
    return {cell: value for cell, value in ratio_cells(summary) if value > limit}


# --- reading the thread hops of a track ---------------------------------------------------


def hops_of(summary, track):
    run = find(summary["tracks"], track=track)
    return run.get("thread_hops") if run else None


def hop_rows(hops, section, subject, clients=None):
    """The thread-hops rows of `subject` under each server: {server: (row, its floor)}."""
    found = {}
    for server in ASGI_SERVERS:
        wanted = {"section": section, "subject": subject, "server": server}
        if clients is not None:
            wanted["clients"] = clients
        row = thread_hops.find(hops["rows"], **wanted)
        if row:
            found[server] = (row, thread_hops.floor_of(hops["rows"], row))
    return found


def predicted(floor_rate, per_unit, inprocess_ms):
    """The ratio a row would have if it cost the floor's time per request (or broadcast) plus
    the same work's in-process time, and nothing else."""
    floor_ms = per_unit / floor_rate * 1000
    return (floor_ms + inprocess_ms) / floor_ms


def hops_text(count, unit):
    return f"{count:g} thread hop{'' if count == 1 else 's'} per {unit}"


def agreement(prediction, measured):
    """How a prediction from in-process timings compares with the measured ratio."""
    if abs(prediction / measured - 1) <= 0.25:
        return "close to"
    return "above" if prediction > measured else "below"


def measured_twice(summary, track, section, subject, hop_subject):
    """A sentence on how far the same application's ratio moved between the two times this
    run measured it (its table, and the thread-hops rows), or "" if it was measured once."""
    pairs = twice_measured_pairs(summary, track, section, subject, hop_subject)
    if not pairs:
        return ""
    return (
        " Measured twice in this run, minutes apart (its table, then the thread-hops rows), "
        "the same application gave "
        + listed(
            [
                f"{times(a)} and {times(b)} under {server}"
                + (
                    f" with {clients} client{'s' if clients > 1 else ''}"
                    if section == "echo"
                    else ""
                )
                for a, b, server, clients in pairs
            ]
        )
        + f" (up to {noise(pairs):.2f} times apart): read smaller differences as this run's "
        "noise."
    )


def noise(pairs):
    """The largest factor between two measurements of the same ratio."""
    return max(max(a, b) / min(a, b) for a, b, _, _ in pairs)


def twice_measured_pairs(summary, track, section, subject, hop_subject):
    """[(ratio in its table, ratio in the thread-hops rows, server, clients)]."""
    rows = [r for r in all_rows(summary) if r["track"] == track and r["section"] == section]
    hops = hops_of(summary, track)
    pairs = []
    for row in (r for r in rows if r["subject"] == subject):
        floor = floors(rows, row).get("floor" if section != "echo" else "bare ASGI")
        again = thread_hops.find(
            hops["rows"],
            section=section,
            subject=hop_subject,
            server=row["server"],
            clients=row["clients"],
        )
        if floor and again:
            first = time_per_message_ratio(row, floor)
            second = thread_hops.ratio(again, thread_hops.floor_of(hops["rows"], again))
            pairs.append((first, second, row["server"], row["clients"]))
    return pairs


def listed(parts):
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def share_taken_off(row, without):
    """How much of `row`'s time per request or message is gone in `without`."""
    return 1 - row["rate"] / without["rate"]


# --- the paragraphs -----------------------------------------------------------------------


def http_paragraph(summary, track):
    rows = [r for r in all_rows(summary) if r["track"] == track and r["section"] == "http"]
    hops = hops_of(summary, track)
    if not rows or not hops:
        return None
    covered = set()
    page = hops["counts"]["page"]
    django = hops["versions"]["Django"]
    text = [
        f"**HTTP, {track} (Django {django}).** In-process, with no server and no socket, one "
        f"request for step 03's page costs {milliseconds(page['wsgi_ms'])} ms through Django's "
        f"WSGI handler (what runserver runs) and {milliseconds(page['inprocess_ms'])} ms through "
        f"its ASGI handler (what daphne and uvicorn run), which makes "
        f"{hops_text(page['hops'], 'request')}: "
        f"{', '.join(f'`{name}`' for name in page['hop_functions'])}. One hop of "
        f"an empty function costs {page['hop_us']:.0f} µs on this machine, so {page['hops']} "
        f"of them come to {milliseconds(page['hops'] * page['hop_us'] / 1000)} ms."
    ]
    parts = []
    for server in ("runserver", *ASGI_SERVERS):
        row = find(rows, subject="step 03 page", server=server)
        floor = row and floors(rows, row).get("floor")
        if not floor:
            continue
        covered.add(key("HTTP", row, "floor"))
        inprocess = page["wsgi_ms"] if server == "runserver" else page["inprocess_ms"]
        prediction = predicted(floor["rate"], 1, inprocess)
        measured = time_per_message_ratio(row, floor)
        parts.append(
            f"under {server}, {milliseconds(1000 / floor['rate'])} ms plus "
            f"{milliseconds(inprocess)} ms predicts {times(prediction)}, "
            f"{agreement(prediction, measured)} the {times(measured)} measured"
        )
    text.append(
        "The floor is the server's own time per request (1 ÷ the bare application's "
        "requests/s under it; for runserver, its threaded WSGIServer with a bare WSGI app), so "
        "the floor plus the page's in-process cost predicts the ratio: "
        + "; ".join(parts)
        + ". Each ratio is Django's work per request over the server's own: the cheaper the "
        "server, the larger the ratio. The in-process figures time one request at a time by "
        "the clock, while a server has several under way (one request's wait for its thread "
        "overlaps another's work) on a machine shared with other work, so a prediction is an "
        "estimate, and how far this run moved is the yardstick."
    )
    text[-1] += measured_twice(
        summary, track, "http", "step 03 page", thread_hops.PAGE_LABELS["page"]
    )
    variants = [v for v in thread_hops.PAGE_VARIANTS if v != "page" and v in hops["counts"]]
    if variants:
        measured = []
        for variant in ["page", *variants]:
            count = hops["counts"][variant]
            under = hop_rows(hops, "http", thread_hops.PAGE_LABELS[variant])
            for row, _ in under.values():
                covered.add(key("thread hops", row, "floor"))
            figures = " and ".join(
                f"{times(thread_hops.ratio(row, floor))} under {server}"
                for server, (row, floor) in under.items()
            )
            measured.append(
                f"{thread_hops.PAGE_LABELS[variant].removeprefix('step 03 ')}: "
                f"{count['hops']} hops, {milliseconds(count['inprocess_ms'])} ms in-process, "
                f"{figures}"
            )
        text.append(
            "The thread-hops rows take the causes out one at a time, under the same servers: "
            + "; ".join(measured)
            + "."
        )
        fewest = min(variants, key=lambda v: hops["counts"][v]["hops"])
        default_rows = hop_rows(hops, "http", thread_hops.PAGE_LABELS["page"])
        fewest_rows = hop_rows(hops, "http", thread_hops.PAGE_LABELS[fewest])
        shares = [
            f"{share_taken_off(default_rows[s][0], fewest_rows[s][0]):.0%} under {s}"
            for s in ASGI_SERVERS
            if s in default_rows and s in fewest_rows
        ]
        text.append(
            f"Taking out {page['hops'] - hops['counts'][fewest]['hops']} of the "
            f"{page['hops']} hops ({thread_hops.PAGE_LABELS[fewest].removeprefix('step 03 ')}) "
            f"takes {listed(shares)} off the time per request. What is left is Django's ASGI "
            "handler itself against the same page under WSGI: "
            f"{milliseconds(hops['counts'][fewest]['inprocess_ms'])} ms in-process against "
            f"{milliseconds(page['wsgi_ms'])} ms."
        )
        older = [
            (run["track"], run["thread_hops"])
            for run in summary["tracks"]
            if run["track"] != track
            and "thread_hops" in run
            and int(run["thread_hops"]["versions"]["Django"].split(".")[0]) < 4
        ]
        for other, other_hops in older:
            count = other_hops["counts"]["page"]
            text.append(
                f"On the {other} track Django {other_hops['versions']['Django']}'s ASGI handler "
                f"served the same page in {milliseconds(count['inprocess_ms'])} ms in-process, "
                f"with {hops_text(count['hops'], 'request')}, and its WSGI handler in "
                f"{milliseconds(count['wsgi_ms'])} ms."
            )
    else:
        text.append(
            f"Django {django} has no async views and runs all its middleware and the view "
            "inside one of those hops (`get_response`), so there is no cause to take out "
            "without changing the page."
        )
        for row in hop_rows(hops, "http", thread_hops.PAGE_LABELS["page"]).values():
            covered.add(key("thread hops", row[0], "floor"))
    return " ".join(text), covered


def echo_paragraph(summary, track):
    rows = [r for r in all_rows(summary) if r["track"] == track and r["section"] == "echo"]
    hops = hops_of(summary, track)
    if not rows or not hops:
        return None
    covered = set()
    echo = hops["counts"]["echo"]
    channels = hops["versions"]["channels"]
    hop_names = ", ".join(f"`{name}`" for name in echo["hop_functions"]) or "none"
    text = [
        f"**Echo, {track} (Channels {channels}).** Step 05's consumer makes "
        f"{hops_text(echo['hops'], 'message')} ({hop_names}); in-process, with no server and "
        "no socket, one "
        f"message through step 05's whole application costs "
        f"{milliseconds(echo['inprocess_ms'])} ms."
    ]
    without = hops["counts"].get("echo_without_per_message_hop")
    if without:
        text.append(
            "Channels 4's `AsyncConsumer.dispatch` awaits `aclose_old_connections()` (a "
            "`sync_to_async` of Django's `close_old_connections`) before every handler; "
            "Channels 3 did not. Taken out of dispatch, in an experiment inside benchmarks/ only "
            "(NOT A RECOMMENDATION: a consumer that uses the database needs it), the consumer "
            f"makes {hops_text(without['hops'], 'message')} and costs "
            f"{milliseconds(without['inprocess_ms'])} ms per message in-process."
        )
    parts = []
    echo_clients = {r["clients"] for r in rows}
    echo_clients |= {r["clients"] for r in hops["rows"] if r["section"] == "echo"}
    for clients in sorted(echo_clients):
        for server in ASGI_SERVERS:
            row = find(rows, subject=STEP05_MEMORY, server=server, clients=clients)
            floor = row and floors(rows, row).get("bare ASGI")
            part = f"{clients} client{'s' if clients > 1 else ''} under {server}: "
            if floor:
                covered.add(key("echo", row, "bare ASGI"))
                part += f"{times(time_per_message_ratio(row, floor))} in the echo table"
            experiment = hop_rows(hops, "echo", thread_hops.ECHO_LABELS["echo"], clients)
            if not floor and server not in experiment:
                continue
            if server in experiment:
                default, hop_floor = experiment[server]
                covered.add(key("thread hops", default, "floor"))
                part += (
                    f"{', ' if floor else ''}{times(thread_hops.ratio(default, hop_floor))} "
                    "in the thread-hops rows"
                )
            taken_out = hop_rows(
                hops, "echo", thread_hops.ECHO_LABELS["echo_without_per_message_hop"], clients
            )
            if server in taken_out and server in experiment:
                out, hop_floor = taken_out[server]
                covered.add(key("thread hops", out, "floor"))
                part += (
                    f", {times(thread_hops.ratio(out, hop_floor))} without the hop (its "
                    f"{share_taken_off(experiment[server][0], out):.0%} of the time per message)"
                )
            parts.append(part)
    if parts:
        text.append(
            "Against the bare ASGI echo under the same server: "
            + "; ".join(parts)
            + "."
            + measured_twice(summary, track, "echo", STEP05_MEMORY, thread_hops.ECHO_LABELS["echo"])
        )
    redis, beyond = [], []
    pairs = twice_measured_pairs(
        summary, track, "echo", STEP05_MEMORY, thread_hops.ECHO_LABELS["echo"]
    )
    spread = noise(pairs) if pairs else 1.0
    for clients in sorted({r["clients"] for r in rows}):
        for server in ASGI_SERVERS:
            memory = find(rows, subject=STEP05_MEMORY, server=server, clients=clients)
            row = find(rows, subject=STEP05_REDIS, server=server, clients=clients)
            floor = row and floors(rows, row).get("bare ASGI")
            if memory and floor:
                covered.add(key("echo", row, "bare ASGI"))
                factor = time_per_message_ratio(row, memory)
                redis.append(times(factor))
                if max(factor, 1 / factor) > spread:
                    beyond.append(
                        f"{times(factor)} under {server} with {clients} "
                        f"client{'s' if clients > 1 else ''}"
                    )
    if redis:
        text.append(
            "The Redis rows differ from the in-memory ones only by the channel layer, which "
            "carries none of an echo's messages (the consumer's `send()` goes straight to its "
            "socket; the layer only waits for events in the background): they take "
            f"{listed(redis)} the in-memory rows' time per message, and the causes above are "
            "theirs too."
        )
        if beyond:
            text.append(
                f"Beyond this run's noise ({spread:.2f} times): {listed(beyond)}; no measured "
                "cause sits in the layer for that (the echo sends nothing through it), so read "
                "it as the shared machine's until a quiet run repeats it."
            )
    return " ".join(text), covered


def websockets_paragraph(summary, track):
    rows = [r for r in all_rows(summary) if r["track"] == track and r["section"] == "echo"]
    covered = set()
    servers, products = [], []
    for clients in sorted({r["clients"] for r in rows}):
        websockets = find(rows, server="websockets", clients=clients)
        if not websockets:
            continue
        for server in ASGI_SERVERS:
            bare = find(rows, subject=BARE_ECHO, server=server, clients=clients)
            if not bare:
                continue
            covered.add(key("echo", bare, "websockets"))
            server_factor = time_per_message_ratio(bare, websockets)
            servers.append(
                f"{times(server_factor)} under {server} with {clients} "
                f"client{'s' if clients > 1 else ''}"
            )
            for subject in (STEP04, STEP05_MEMORY, STEP05_REDIS):
                row = find(rows, subject=subject, server=server, clients=clients)
                if not row:
                    continue
                covered.add(key("echo", row, "websockets"))
                whole = time_per_message_ratio(row, websockets)
                if whole > LIMIT:
                    products.append(
                        f"{subject} under {server}, {clients} client{'s' if clients > 1 else ''}:"
                        f" {times(time_per_message_ratio(row, bare))} × {times(server_factor)}"
                        f" = {times(whole)}"
                    )
    if not servers:
        return None
    text = (
        f"**Echo against the websockets library, {track}.** That column multiplies two measured "
        "factors. The server's: the bare ASGI echo, the same few lines under every server, "
        f"takes {listed(servers)} the websockets library's time per message, which is the "
        "server's own cost of a message (its WebSocket framing, its event loop, its ASGI "
        "queues), since the application is the same. The application's: the row against the "
        "bare echo under the same server, explained above (step 04's router: its own "
        "paragraph)."
    )
    if products:
        text += " Per message, application × server: " + "; ".join(products) + "."
    return text, covered


def broadcast_paragraph(summary, track):
    rows = [r for r in all_rows(summary) if r["track"] == track and r["section"] == "broadcast"]
    hops = hops_of(summary, track)
    if not rows or not hops:
        return None
    covered = set()
    counts = hops["broadcast_counts"]
    memory, redis = counts["echo"]["memory"], counts["echo"].get("redis")
    clients = memory["clients"]
    hop_names = ", ".join(f"`{name}`" for name in memory["hop_functions"])
    text = [
        f"**Broadcast, {track} (Channels {hops['versions']['channels']}).** For one message to "
        f"{clients} clients the bare room writes to {clients} sockets from one task. Step 05's "
        "`ChatConsumer.receive` calls `group_send`, the channel layer puts the event on each "
        "member's channel, and each member's consumer takes it off and dispatches it to "
        "`chat_message`, which encodes the JSON and sends it. Measured in-process, with no "
        "server and no socket: "
        + (
            f"{hops_text(memory['hops'], 'broadcast')} ({hop_names}: one per handler called, "
            "the sender's `websocket.receive` and each member's `chat.message`)"
            if memory["hops"]
            else "no thread hop"
        )
        + f"; the in-memory layer alone (one `group_send`, then one `receive` per member) "
        f"{milliseconds(memory['layer_ms'])} ms per broadcast, and the whole broadcast through "
        f"step 05's application {milliseconds(memory['inprocess_ms'])} ms."
    ]
    if redis:
        commands = sum(redis["redis_commands"].values())
        busiest = sorted(redis["redis_commands"].items(), key=lambda item: -item[1])[:4]
        text.append(
            f"With the Redis layer the layer alone takes {milliseconds(redis['layer_ms'])} ms and "
            f"the whole broadcast {milliseconds(redis['inprocess_ms'])} ms, with "
            f"{commands:.0f} Redis commands per broadcast ("
            + ", ".join(f"{calls:.0f} {name.upper()}" for name, calls in busiest)
            + "), each a round trip to redis-server."
        )
    without = counts.get("echo_without_per_message_hop", {}).get("memory")
    if without:
        text.append(
            f"Without the per-message hop (the experiment, not a recommendation) it makes "
            f"{hops_text(without['hops'], 'broadcast')} and costs "
            f"{milliseconds(without['inprocess_ms'])} ms in-process."
        )
    parts = []
    for server in ASGI_SERVERS:
        for subject, processes, inprocess in (
            (BROADCAST_MEMORY, 1, memory["inprocess_ms"]),
            (BROADCAST_REDIS, 1, redis and redis["inprocess_ms"]),
        ):
            row = find(rows, subject=subject, server=server, processes=processes)
            floor = row and floors(rows, row).get("floor")
            if not floor or not inprocess:
                continue
            covered.add(key("broadcast", row, "floor"))
            prediction = predicted(floor["rate"], clients, inprocess)
            measured = time_per_message_ratio(row, floor)
            parts.append(
                f"{subject.removeprefix('step 05, ')} under {server}, the floor's "
                f"{milliseconds(clients / floor['rate'] * 1000)} ms per broadcast plus "
                f"{milliseconds(inprocess)} ms predicts {times(prediction)}, "
                f"{agreement(prediction, measured)} the {times(measured)} measured"
            )
    if parts:
        text.append(
            "Against the bare room under the same server (the floor's time per broadcast is "
            "its clients ÷ deliveries/s): "
            + "; ".join(parts)
            + ". In-process the consumers' sends go to asgiref's communicator, not to a "
            "socket, and the clock runs while a hop waits for its thread, which the server "
            "overlaps with other members' deliveries."
        )
    experiment = []
    for server in ASGI_SERVERS:
        default = hop_rows(hops, "broadcast", thread_hops.BROADCAST_LABELS["echo"]).get(server)
        out = hop_rows(
            hops, "broadcast", thread_hops.BROADCAST_LABELS["echo_without_per_message_hop"]
        ).get(server)
        for row in (default, out):
            if row:
                covered.add(key("thread hops", row[0], "floor"))
        if default and out:
            experiment.append(
                f"{times(thread_hops.ratio(*default))} with it and "
                f"{times(thread_hops.ratio(*out))} without under {server} "
                f"({share_taken_off(default[0], out[0]):.0%} of the time per delivery)"
            )
        elif default:
            experiment.append(f"{times(thread_hops.ratio(*default))} under {server}")
    if experiment:
        text.append(
            "The thread-hops rows measured the same room: "
            + "; ".join(experiment)
            + "."
            + measured_twice(
                summary, track, "broadcast", BROADCAST_MEMORY, thread_hops.BROADCAST_LABELS["echo"]
            )
        )
    split = []
    for server in ASGI_SERVERS:
        one = find(rows, subject=BROADCAST_REDIS, server=server, processes=1)
        two = find(rows, subject=BROADCAST_REDIS, server=server, processes=2)
        floor = two and floors(rows, two).get("floor")
        if one and floor:
            covered.add(key("broadcast", two, "floor"))
            split.append(
                f"{times(time_per_message_ratio(two, floor))} under {server} against "
                f"{times(time_per_message_ratio(one, floor))} with one"
            )
    if split:
        text.append(
            "With two server processes the load generator splits the room's clients between "
            "them and Redis carries each message to both, so each process dispatches half the "
            f"deliveries, and the two share the machine's cores: {listed(split)}."
        )
    return " ".join(text), covered


def tail_paragraph(summary, track):
    """Daphne's one-client echo p99: what this run measured and what its tail is made of."""
    hops = hops_of(summary, track)
    tails = hops.get("echo_tail") if hops else None
    rows = [r for r in all_rows(summary) if r["track"] == track and r["section"] == "echo"]
    if not tails or not rows:
        return None
    one = min(r["clients"] for r in rows)
    bare = {s: find(rows, subject=BARE_ECHO, server=s, clients=one) for s in ASGI_SERVERS}
    if None in bare.values():
        return None
    text = [
        f"**Daphne's one-client echo tail, {track}.** In the echo table the bare ASGI echo "
        "answers one client with a p50 and a p99 of "
        + " and ".join(
            f"{milliseconds(bare[s]['p50_ms'])} and {milliseconds(bare[s]['p99_ms'])} ms under "
            f"{s} ({bare[s]['p99_ms'] / bare[s]['p50_ms']:.1f}× the p50)"
            for s in ASGI_SERVERS
        )
        + ". To see what the slow round trips are made of, the same run timed every round "
        "trip of one client against the same bare echo with the server's garbage collections "
        "and its waits in epoll logged (`python -m benchmarks.thread_hops --echo-tail`)."
    ]
    for tail in tails:
        part = (
            f"Under {tail['server']}, {tail['slow']} of {number(tail['round_trips'])} round "
            f"trips ({tail['slow'] / tail['round_trips']:.2%}) took over "
            f"{tail['slow_ms']:.0f} ms (p50 {milliseconds(tail['p50_ms'])} ms, p99 "
            f"{milliseconds(tail['p99_ms'])} ms); {tail['slow_during_gc']} of them overlapped "
            "a garbage collection in the server"
        )
        if tail["waits_logged"]:
            part += (
                f", and in {tail['slow_server_idle']} the server sat idle in epoll, waiting "
                "for its socket, for at least half of the round trip: time spent outside the "
                "server's Python, in the client, the kernel or the scheduler."
            )
        else:
            part += " (its event loop, uvloop, waits outside Python's selectors, unlogged)."
        text.append(part)
    return " ".join(text), set()


PARAGRAPHS = (
    http_paragraph,
    echo_paragraph,
    websockets_paragraph,
    broadcast_paragraph,
    tail_paragraph,
)


def paragraphs(summary):
    """[(text, covered keys)] for every track and topic this run measured."""
    found = []
    for run in summary["tracks"]:
        for paragraph in PARAGRAPHS:
            result = paragraph(summary, run["track"])
            if result:
                found.append(result)
    return found


def router_covered(summary):
    """Step 04's rows against the bare echo: results.md's router paragraph explains them."""
    return {
        key("echo", row, "bare ASGI")
        for row in all_rows(summary)
        if row["section"] == "echo" and row["subject"] == STEP04
    }


def uncovered(summary, limit=LIMIT):
    covered = router_covered(summary)
    for _, keys in paragraphs(summary):
        covered |= keys
    return sorted(cell for cell in above(summary, limit) if cell not in covered)


def section(summary):
    """The Markdown: the paragraphs, then every ratio above the limit and where it is told."""
    found = paragraphs(summary)
    if not found:
        return ""
    lines = [
        f"### Every ratio above {LIMIT}×, and what it is made of",
        "",
        "Each paragraph explains ratios of the tables above from figures of the same run: the "
        "thread-hops rows and counts, and in-process timings of the same work with no server "
        "and no socket (benchmarks/thread_hops.py, benchmarks/ratio_causes.py).",
        "",
    ]
    for text, _ in found:
        lines += [text, ""]
    titles = {}
    for text, keys in found:
        title = text.split("**")[1].rstrip(".")
        for cell in keys:
            titles[cell] = title
    for cell in router_covered(summary):
        titles.setdefault(cell, "Step 04's router against the bare ASGI echo")
    rows = []
    for cell, value in sorted(above(summary).items()):
        table, track, subject, server, clients, processes, column = cell
        where = f"{table}, × {column}" if table == "echo" else table
        rows.append(
            f"| {where} | {track} | {subject} | {server} | {clients} | {processes} | "
            f"{times(value)} | {titles.get(cell, 'NOT EXPLAINED')} |"
        )
    lines += [
        f"Every ratio above {LIMIT}× in this report (the larger of a cell's two), and the "
        "paragraph that explains it:",
        "",
        "| Table | Track | Application | Server | clients | processes | ratio | explained in |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)
