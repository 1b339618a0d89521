"""What a room name may be: a room is a channel-layer group, so its name must make a valid
group name, which Channels limits to fewer than 100 ASCII letters, digits, '-', '_' or '.'.
https://channels.readthedocs.io/en/stable/topics/channel_layers.html#groups
"""

import re

GROUP_PREFIX = 'chat_'
ROOM_NAME = re.compile(r'[A-Za-z0-9_.-]+')
MAX_ROOM_NAME_LENGTH = 99 - len(GROUP_PREFIX)


def room_name_problem(room_name):
    """Why `room_name` cannot be a room, or None if it can."""
    if not ROOM_NAME.fullmatch(room_name):
        return 'a room name uses only ASCII letters, digits, "-", "_" and "."'
    if len(room_name) > MAX_ROOM_NAME_LENGTH:
        return f'a room name has at most {MAX_ROOM_NAME_LENGTH} characters'
    return None


def group_name(room_name):
    return GROUP_PREFIX + room_name
