"""Step 05's project wiring in process: the settings that pick runserver's app and the channel
layer, the room page, and the room-name rule against the installed Channels' own check."""

import runpy

import pytest
from channels.layers import BaseChannelLayer
from django.core.management import get_commands
from django.test import Client

from chat.rooms import MAX_ROOM_NAME_LENGTH, group_name, room_name_problem
from tools.repository import step_directory

SETTINGS_FILE = step_directory("step05_channels") / "newtest" / "settings.py"


def browser():
    # The step's ALLOWED_HOSTS is the DEBUG default: localhost's names, not Django's "testserver".
    return Client(HTTP_HOST="127.0.0.1:8000")


def installed_channels_major():
    import channels

    return int(channels.__version__.split(".")[0])


def settings_with(monkeypatch, **environment):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


def test_runserver_comes_from_daphne_on_channels_4_and_from_channels_on_channels_3():
    expected = "daphne" if installed_channels_major() >= 4 else "channels"
    assert get_commands()["runserver"] == expected


def test_the_runserver_app_of_the_installed_channels_comes_first(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    apps = settings_with(monkeypatch)["INSTALLED_APPS"]
    # First, so before staticfiles, whose own runserver would otherwise win.
    assert apps[0] == ("daphne" if installed_channels_major() >= 4 else "channels")
    assert "django.contrib.staticfiles" in apps[1:]
    assert len(set(apps)) == len(apps)


def test_without_redis_url_the_layer_is_in_memory(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    layers = settings_with(monkeypatch)["CHANNEL_LAYERS"]
    assert layers["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"


def test_redis_url_switches_to_the_redis_layer_with_a_read_timeout_above_its_blocking_reads(
    monkeypatch,
):
    from channels_redis.core import RedisChannelLayer

    layers = settings_with(monkeypatch, REDIS_URL="redis://127.0.0.1:6390/0")["CHANNEL_LAYERS"]
    assert layers["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    (host,) = layers["default"]["CONFIG"]["hosts"]
    assert host["address"] == "redis://127.0.0.1:6390/0"
    # channels-redis blocks brpop_timeout seconds in BZPOPMIN; a shorter read timeout cuts it.
    assert host["socket_timeout"] > RedisChannelLayer.brpop_timeout
    # redis-py 8's pool holds 100 connections and refuses the 101st: a crowd leaving needs more.
    assert host["max_connections"] >= 1000
    layer = RedisChannelLayer(**layers["default"]["CONFIG"])  # the config is one it accepts
    assert layer.hosts[0]["address"] == "redis://127.0.0.1:6390/0"


def test_the_room_page_shows_the_room_and_writes_messages_as_text():
    response = browser().get("/chat/lobby/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<script id="room-name" type="application/json">"lobby"</script>' in page
    assert "/ws/chat/${roomName}/" in page
    assert "item.textContent = text" in page and "innerHTML" not in page


@pytest.mark.parametrize(
    "room", ["two%20words", "caf%C3%A9", "a!b", "r" * (MAX_ROOM_NAME_LENGTH + 1)]
)
def test_the_room_page_of_an_impossible_room_is_404(room):
    assert browser().get(f"/chat/{room}/").status_code == 404


def test_the_echo_page_of_step_03_is_still_at_the_root():
    response = browser().get("/")
    assert response.status_code == 200
    assert '<button id="send">Send over WebSocket</button>' in response.content.decode()


ROOM_NAMES = [
    "lobby",
    "a",
    "A-Z_0.9",
    "...",
    "-",
    "r" * MAX_ROOM_NAME_LENGTH,
    "r" * (MAX_ROOM_NAME_LENGTH + 1),
    "two words",
    "café",
    "a!b",
    "a/b",
    "ünï",
    "tab\t",
    "emoji✓",
    "a:b",
    "$",
]


def test_an_empty_room_name_is_refused_although_the_bare_prefix_is_a_valid_group():
    assert room_name_problem("") is not None


@pytest.mark.parametrize("room", ROOM_NAMES)
def test_a_room_name_is_accepted_exactly_when_channels_accepts_its_group_name(room):
    layer = BaseChannelLayer()
    check = getattr(layer, "require_valid_group_name", None) or layer.valid_group_name
    try:
        channels_accepts = check(group_name(room))
    except TypeError:
        channels_accepts = False
    assert (room_name_problem(room) is None) == channels_accepts


def test_without_the_rule_a_bad_room_name_would_fail_inside_the_channel_layer():
    import asyncio

    from channels.layers import InMemoryChannelLayer

    with pytest.raises(TypeError):
        asyncio.run(InMemoryChannelLayer().group_add(group_name("café"), "specific.channel"))
