"""The paragraph results.md tells about step 04's router against the bare ASGI echo, from one
run's figures. The names it gives (the router, the WebSocket application, the Origin check,
the size limit) are read from step 04's code, so a rename there shows here.
"""

import ast
from functools import cache

from benchmarks.figures import (
    ASGI_SERVERS,
    BARE_ECHO,
    STEP04,
    STEP05_MEMORY,
    STEP05_REDIS,
    find,
    latency_ratio,
    milliseconds,
    number,
    repetition_spread,
    time_per_message_ratio,
    times,
)
from tools.repository import step_directory


class CodeChanged(LookupError):
    """Step 04's code no longer has the shape this paragraph describes."""


def functions(path):
    return {
        node.name: node
        for node in ast.parse(path.read_text()).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def awaited_names(statements):
    """The names of the functions awaited by `statements`, as in `await websocket_echo(...)`."""
    return [
        node.value.func.id
        for statement in statements
        for node in ast.walk(statement)
        if isinstance(node, ast.Await)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
    ]


@cache
def step04_names(step=None):
    """{"router", "websocket_app", "origin_check", "size_limit"}: the names in step 04's
    newtest/asgi.py and the module its WebSocket application comes from (or in `step`, a
    directory holding a copy of it)."""
    project = (step or step_directory("04")) / "newtest"
    asgi = ast.parse((project / "asgi.py").read_text())
    # The router is what `application` is bound to last.
    bindings = [
        node.value.id
        for node in asgi.body
        if isinstance(node, ast.Assign)
        and [ast.unparse(target) for target in node.targets] == ["application"]
        and isinstance(node.value, ast.Name)
    ]
    if not bindings:
        raise CodeChanged("step 04's asgi.py binds `application` to no function of its own")
    router = functions(project / "asgi.py")[bindings[-1]]
    # The WebSocket application is what the router awaits for scope["type"] == "websocket".
    websocket_app = next(
        (
            awaited
            for branch in ast.walk(router)
            if isinstance(branch, ast.If) and "'websocket'" in ast.unparse(branch.test)
            for awaited in awaited_names(branch.body)
        ),
        None,
    )
    source = next(
        (
            node.module
            for node in asgi.body
            if isinstance(node, ast.ImportFrom)
            and any(alias.name == websocket_app for alias in node.names)
        ),
        None,
    )
    if websocket_app is None or source is None:
        raise CodeChanged("step 04's router awaits no imported application for WebSockets")
    app = functions(project.parent / (source.replace(".", "/") + ".py"))[websocket_app]
    # The Origin check: the function the application calls with the scope alone.
    origin_check = next(
        (
            call.func.id
            for call in ast.walk(app)
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and [ast.unparse(arg) for arg in call.args] == ["scope"]
        ),
        None,
    )
    # The size limit: the name a message's size is compared with.
    size_limit = next(
        (
            compare.comparators[0].id
            for compare in ast.walk(app)
            if isinstance(compare, ast.Compare)
            and isinstance(compare.ops[0], ast.Gt)
            and isinstance(compare.comparators[0], ast.Name)
        ),
        None,
    )
    if origin_check is None or size_limit is None:
        raise CodeChanged(f"step 04's {websocket_app} has no Origin check or no size limit")
    return {
        "router": router.name,
        "websocket_app": websocket_app,
        "origin_check": origin_check,
        "size_limit": size_limit,
    }


def router_paragraph(rows, track):
    """Step 04's router against the bare ASGI echo, told from this run's figures."""
    if not any(r["section"] == "echo" for r in rows):
        return "(This run did not measure the WebSocket echo.)"
    one = min(r["clients"] for r in rows if r["section"] == "echo")
    many = max(r["clients"] for r in rows if r["section"] == "echo")

    def row(subject, server, clients):
        return find(
            rows, section="echo", track=track, subject=subject, server=server, clients=clients
        )

    needed = [row(s, v, c) for s in (BARE_ECHO, STEP04) for v in ASGI_SERVERS for c in (one, many)]
    if None in needed:
        return f"(The {track} run did not measure both step 04 and the bare ASGI echo.)"

    names = step04_names()
    parts = []
    single = []
    for server in ASGI_SERVERS:
        step, floor = row(STEP04, server, one), row(BARE_ECHO, server, one)
        single.append(
            f"{milliseconds(step['p50_ms'])} ms against {milliseconds(floor['p50_ms'])} ms "
            f"under {server} ({times(latency_ratio(step, floor))})"
        )
    parts.append(
        f"With one client, a median echo round trip through step 04's router "
        f"(`{names['router']}` handing the socket to `{names['websocket_app']}`) takes "
        f"{single[1]} and {single[0]}, each compared with the bare ASGI echo under the same server."
    )
    loaded = []
    for server in ASGI_SERVERS:
        step, floor = row(STEP04, server, many), row(BARE_ECHO, server, many)
        loaded.append(
            f"{number(step['rate'])} messages/s against {number(floor['rate'])} under {server} "
            f"({times(time_per_message_ratio(step, floor))} the time per message)"
        )
    parts.append(f"With {many} clients at once it echoes {loaded[1]} and {loaded[0]}.")

    ratios = []
    for server in ASGI_SERVERS:
        for clients in (one, many):
            step, floor = row(STEP04, server, clients), row(BARE_ECHO, server, clients)
            ratios += [latency_ratio(step, floor), time_per_message_ratio(step, floor)]
    noise = max(
        repetition_spread(row(s, v, c), key)
        for s in (BARE_ECHO, STEP04)
        for v in ASGI_SERVERS
        for c in (one, many)
        for key in ("p50_ms", "rate")
    )
    worst = max(ratios)
    parts.append(
        "The router runs once per connection, to pick the application; from then on every "
        f"message goes between the server and `{names['websocket_app']}`, which does per "
        "message what the bare echo does (await `receive()`, `send()` the text back) plus a "
        f"size check against `{names['size_limit']}`. Django is reached once per connection "
        f"too, when `{names['origin_check']}()` checks the Origin against ALLOWED_HOSTS at the "
        "handshake, and the benchmark opens its sockets before it starts the clock."
    )
    if worst <= noise:
        parts.append(
            f"Accordingly the router's figures stay within {times(worst)} of the floor, inside "
            f"this run's own noise: the same measurement varied by up to "
            f"{(noise - 1) * 100:.0f}% between its repetitions. The router costs nothing "
            f"measurable per message."
        )
    else:
        parts.append(
            f"In this run the router's worst figure is {times(worst)} the floor, beyond this "
            f"run's noise (the same measurements varied by up to {(noise - 1) * 100:.0f}% "
            f"between repetitions): rerun on a quiet machine before reading it as the "
            f"router's cost."
        )
    bare = {server: row(BARE_ECHO, server, one) for server in ASGI_SERVERS}
    slower, faster = sorted(ASGI_SERVERS, key=lambda s: bare[s]["p50_ms"], reverse=True)
    server_ratio = latency_ratio(bare[slower], bare[faster])
    step04_single = max(latency_ratio(row(STEP04, s, one), bare[s]) for s in ASGI_SERVERS)
    parts.append(
        f"For scale, the choice of server moves the bare echo's own round trip by "
        f"{times(server_ratio)} ({slower} against {faster}), "
        + ("more than" if server_ratio > step04_single else "no more than")
        + f" the router moves it ({times(step04_single)} at most with one client)."
    )
    websockets = find(rows, section="echo", track=track, server="websockets", clients=one)
    if websockets:
        parts.append(
            f"The websockets library's own server, with no ASGI in between, answers one client "
            f"in {milliseconds(websockets['p50_ms'])} ms "
            f"({times(latency_ratio(websockets, bare[faster]))} the bare echo under {faster})."
        )
    channels = [
        (label, row(subject, faster, one))
        for label, subject in (("in-memory", STEP05_MEMORY), ("Redis", STEP05_REDIS))
    ]
    channels = [(label, r) for label, r in channels if r]
    if channels:
        parts.append(
            f"Step 05's Channels consumer on the same path, under {faster}, takes "
            + " and ".join(
                f"{times(latency_ratio(r, bare[faster]))} the bare echo's round trip with the "
                f"{label} layer"
                for label, r in channels
            )
            + "."
        )
    return " ".join(parts)
