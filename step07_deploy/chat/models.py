"""A chat message is data: stored with an increasing id before anyone is sent it, so a page
that missed it can ask for it again. https://docs.djangoproject.com/en/3.0/topics/db/models/
"""

from django.db import models


class Message(models.Model):
    room = models.CharField(max_length=100)
    text = models.TextField()
    author = models.CharField(max_length=150, blank=True)  # a username; empty for anonymous
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ['id']
        # Every question the chat asks is "this room's messages around this id".
        indexes = [models.Index(fields=['room', 'id'], name='chat_room_id_idx')]

    def __str__(self):
        return f'{self.room} #{self.id}: {self.text[:40]}'
