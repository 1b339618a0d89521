from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = 'chat'
    # The same id type on Django 3.0 and 5.2, so one migration serves both tracks.
    default_auto_field = 'django.db.models.AutoField'
