"""`python manage.py announce <room> "<text>"`: posts to a room from ordinary, synchronous
Django code, the way a view, a signal handler or a cron job would. The announcement is stored
like any message, then sent to the room's group with async_to_sync. It exits with an error
only if the message was not stored: one stored but not sent (Redis gone) reaches the pages when
they catch up, and the command says so.
https://channels.readthedocs.io/en/stable/topics/channel_layers.html#using-outside-of-consumers
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from chat.history import store_message
from chat.rooms import group_name, room_name_problem


class Command(BaseCommand):
    help = 'Stores a message in a chat room and sends it to everyone in the room.'

    def add_arguments(self, parser):
        parser.add_argument('room')
        parser.add_argument('text')

    def handle(self, room, text, **options):
        problem = room_name_problem(room)
        if problem:
            raise CommandError(problem)
        try:
            frame = store_message(room, text)
        except DatabaseError as error:
            raise CommandError(f'the message was not stored: {error}') from error
        try:
            async_to_sync(get_channel_layer().group_send)(
                group_name(room), {'type': 'chat.message', 'message': frame}
            )
        except Exception as error:  # most often: Redis is not there
            self.stdout.write(
                f'message {frame["id"]} stored in room {room}, but not sent to the open pages '
                f'({type(error).__name__}: {error}); they will get it when they catch up'
            )
            return
        self.stdout.write(f'message {frame["id"]} sent to room {room}')
