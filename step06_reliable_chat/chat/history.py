"""Storing a room's messages and reading them back as the frames the page receives.

These functions are synchronous, like every Django ORM call (before Django 4.1's async
methods): the consumer calls them through database_sync_to_async, a management command calls
them directly. https://channels.readthedocs.io/en/stable/topics/databases.html
"""

from django.db import transaction

from chat.models import Message

HISTORY_LENGTH = 50  # messages a page gets when it joins
CATCH_UP_LIMIT = 500  # messages in one answer to {"after": <id>}; the page asks again for more


def store_message(room, text, user=None, ref=''):
    """Stores a message and returns it as a frame. Its `previous_id` is exact even with several
    server processes: SQLite lets one writer at a time insert, so every lower id is already
    committed when this insert's own is. A `ref` already stored in the room raises IntegrityError
    (chat/resends.py stores a message once per ref)."""
    message = insert_message(room, text, user, ref)
    return as_frame(message, previous_id(room, message.id))


def store_messages(messages):
    """Stores a burst of messages, [(room, text, user, ref)], in one transaction with one INSERT,
    and returns their frames in the same order: one commit for the whole burst instead of one
    per message. The INSERT takes SQLite's write lock until the commit, so the burst's rows are
    the newest ones, in order, whatever other processes do (Django 3.0 does not read back the
    ids of a bulk_create on SQLite, so they are read here); every lower id is committed, as in
    store_message. Each room's first message asks for its `previous_id`; the others follow the
    one before them in the burst. A ref the room holds already raises IntegrityError."""
    with transaction.atomic():
        Message.objects.bulk_create([
            Message(room=room, text=text, author=author_of(user), ref=ref)
            for room, text, user, ref in messages
        ])
        stored = list(reversed(Message.objects.order_by('-id')[:len(messages)]))
        if [(m.room, m.text) for m in stored] != [(room, text) for room, text, _, _ in messages]:
            raise RuntimeError('the newest rows are not the burst just stored')  # rolled back
        frames = []
        previous = {}
        for message in stored:
            if message.room not in previous:
                previous[message.room] = previous_id(message.room, message.id)
            frames.append(as_frame(message, previous[message.room]))
            previous[message.room] = message.id
    return frames


def author_of(user):
    """The name a message is stored under: the username, or '' for an anonymous visitor."""
    return user.username if user is not None and user.is_authenticated else ''


def insert_message(room, text, user=None, ref=''):
    """Inserts a message (one INSERT) and returns the Message."""
    return Message.objects.create(room=room, text=text, author=author_of(user), ref=ref)


def recent_messages(room):
    """The room's last HISTORY_LENGTH messages, oldest first."""
    newest_first = Message.objects.filter(room=room).order_by('-id')[:HISTORY_LENGTH]
    return as_frames(room, list(reversed(newest_first)))


def messages_after(room, after_id):
    """The room's messages with an id above `after_id`, oldest first, CATCH_UP_LIMIT at most."""
    newer = Message.objects.filter(room=room, id__gt=after_id).order_by('id')
    return as_frames(room, list(newer[:CATCH_UP_LIMIT]))


def history_on_join(room, after_id=None):
    """What a socket gets when it joins: the recent history (or everything after `after_id`, up
    to CATCH_UP_LIMIT), and the id of the room's newest message (None for an empty room), which
    tells a page whether anything is left to ask for."""
    history = recent_messages(room) if after_id is None else messages_after(room, after_id)
    newest = Message.objects.filter(room=room).order_by('-id').values_list('id', flat=True)
    return history, newest.first()


def previous_id(room, message_id):
    """The id of the message stored just before `message_id` in the room, or None."""
    earlier = Message.objects.filter(room=room, id__lt=message_id).order_by('-id')
    return earlier.values_list('id', flat=True).first()


def as_frames(room, messages):
    """Frames for consecutive messages of one room: each one's predecessor is the one before
    it in the list, so only the first one's needs a query."""
    frames = []
    previous = previous_id(room, messages[0].id) if messages else None
    for message in messages:
        frames.append(as_frame(message, previous))
        previous = message.id
    return frames


def as_frame(message, previous):
    return {
        'id': message.id,
        'previous_id': previous,
        'room': message.room,
        'message': message.text,
        'author': message.author or None,
        'time': message.created.isoformat(),
    }
