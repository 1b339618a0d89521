"""Storing a room's messages and reading them back as the frames the page receives.

These functions are synchronous, like every Django ORM call (before Django 4.1's async
methods): the consumer calls them through database_sync_to_async, a management command calls
them directly. https://channels.readthedocs.io/en/stable/topics/databases.html
"""

from django.db import connection, transaction

from chat.models import Message

HISTORY_LENGTH = 50  # messages a page gets when it joins
CATCH_UP_LIMIT = 500  # messages in one answer to {"after": <id>}; the page asks again for more


def store_message(room, text, user=None):
    """Stores a message and returns it as a frame, its `previous_id` exact even with several
    server processes writing at once: the room's writers take turns (take_the_rooms_turn),
    so a room's ids are committed in increasing order and every lower id of the room is
    already committed when this one is stored."""
    author = user.username if user is not None and user.is_authenticated else ''
    with transaction.atomic():
        take_the_rooms_turn(room)
        message = Message.objects.create(room=room, text=text, author=author)
        previous = previous_id(room, message.id)
    return as_frame(message, previous)


def take_the_rooms_turn(room):
    """Step 07: waits until no other transaction is storing a message in `room`, and keeps the
    turn until this transaction ends. On PostgreSQL writers run side by side, and one that
    took a lower id can commit after one that took a higher id: a reader would then see the
    higher one first, with a `previous_id` that skips the lower, and never show it. A lock on
    the room, taken before the insert and released at commit, makes id order and commit order
    agree (pg_advisory_xact_lock; rooms whose names hash alike merely share turns). SQLite
    needs none: it lets one writer at a time insert, until that writer commits.
    https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS"""
    if connection.vendor == 'postgresql':
        with connection.cursor() as cursor:
            cursor.execute('SELECT pg_advisory_xact_lock(hashtext(%s))', [room])


def recent_messages(room):
    """The room's last HISTORY_LENGTH messages, oldest first."""
    newest_first = Message.objects.filter(room=room).order_by('-id')[:HISTORY_LENGTH]
    return as_frames(room, list(reversed(newest_first)))


def messages_after(room, after_id):
    """The room's messages with an id above `after_id`, oldest first, CATCH_UP_LIMIT at most."""
    newer = Message.objects.filter(room=room, id__gt=after_id).order_by('id')
    return as_frames(room, list(newer[:CATCH_UP_LIMIT]))


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
