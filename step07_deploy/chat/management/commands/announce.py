"""`python manage.py announce <room> "<text>"`: posts to a room from ordinary, synchronous
Django code, the way a view, a signal handler or a cron job would. The announcement is stored
like any message, then sent to the room's group with async_to_sync.
https://channels.readthedocs.io/en/stable/topics/channel_layers.html#using-outside-of-consumers
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError

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
        frame = store_message(room, text)
        async_to_sync(get_channel_layer().group_send)(
            group_name(room), {'type': 'chat.message', 'message': frame}
        )
        self.stdout.write(f'message {frame["id"]} sent to room {room}')
