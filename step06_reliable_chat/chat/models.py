"""A chat message is data: stored with an increasing id before anyone is sent it, so a page
that missed it can ask for it again. https://docs.djangoproject.com/en/3.0/topics/db/models/
Its `ref` is the id its sender gave it, unique in its room, so a resent message is stored once.
https://docs.djangoproject.com/en/3.0/ref/models/constraints/#uniqueconstraint
"""

from django.db import models


class Message(models.Model):
    room = models.CharField(max_length=100)
    text = models.TextField()
    author = models.CharField(max_length=150, blank=True)  # a username; empty for anonymous
    created = models.DateTimeField(auto_now_add=True)
    # The sender's own id for the message (the "ref" of its frame); empty when it gave none.
    ref = models.CharField(max_length=100, blank=True, default='')

    class Meta:
        ordering = ['id']
        # Every question the chat asks is "this room's messages around this id".
        indexes = [models.Index(fields=['room', 'id'], name='chat_room_id_idx')]
        # One message per ref in a room: a frame sent again with the same ref is the same message.
        constraints = [
            models.UniqueConstraint(
                fields=['room', 'ref'], condition=~models.Q(ref=''), name='chat_room_ref_unique'
            ),
        ]

    def __str__(self):
        return f'{self.room} #{self.id}: {self.text[:40]}'
