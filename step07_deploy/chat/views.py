from django.http import Http404
from django.shortcuts import render

from chat.consumers import MAX_MESSAGE_LENGTH
from chat.rooms import room_name_problem


def room_page(request, room_name):
    """The chat page of one room; its script talks to ws/chat/<room_name>/."""
    problem = room_name_problem(room_name)
    if problem:
        raise Http404(problem)
    context = {'room_name': room_name, 'max_message_length': MAX_MESSAGE_LENGTH}
    return render(request, 'chat/room.html', context)
