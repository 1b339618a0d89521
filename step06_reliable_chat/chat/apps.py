from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ChatConfig(AppConfig):
    name = 'chat'
    # The same id type on Django 3.0 and 5.2, so one migration serves both tracks.
    default_auto_field = 'django.db.models.AutoField'

    def ready(self):
        from chat.sqlite_wal import use_wal

        connection_created.connect(use_wal)  # step 06: every connection in WAL mode
