"""A resent message is stored once. The "ref" a client sends with a message is that message's
id in the room: a frame whose ref the room already holds is the same message sent again (its
answer was lost, say), so it is answered with the stored copy instead of being stored twice.
Sending until answered (at least once) plus storing once per ref gives exactly once in the room,
as Matrix's transaction ids and Ably's idempotent publishing do.
https://docs.djangoproject.com/en/3.0/ref/models/constraints/#uniqueconstraint
"""

from django.db import IntegrityError, transaction

from chat.history import as_frame, insert_message, previous_id, store_message
from chat.models import Message


def store_once(room, text, user=None, ref=None):
    """(frame, True) for a message stored now; (frame of the stored one, False) when the room
    already holds a message with this ref. A message without a ref is always stored."""
    if ref is None or str(ref) == '':
        return store_message(room, text, user), True
    ref = str(ref)  # 7 and "7" are one ref: the column holds text
    try:
        # Insert first, look up only when the constraint refuses: a resend is rare, so the
        # usual message costs no extra query, and two sockets storing one ref at the same
        # moment cannot both get in. The atomic block around the INSERT alone (a savepoint
        # inside a transaction) leaves any outer transaction usable after a refused insert.
        with transaction.atomic():
            message = insert_message(room, text, user, ref)
    except IntegrityError:
        already = stored_with_ref(room, ref)
        if already is None:
            raise  # a different integrity problem: not ours to hide
        return already, False
    return as_frame(message, previous_id(room, message.id)), True


def stored_with_ref(room, ref):
    """The room's message with this ref, as a frame, or None."""
    if ref is None or str(ref) == '':
        return None
    message = Message.objects.filter(room=room, ref=str(ref)).first()
    if message is None:
        return None
    return as_frame(message, previous_id(room, message.id))
