"""
ASGI config for newtest project.

It exposes the ASGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/3.0/howto/deployment/asgi/
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'newtest.settings')

application = get_asgi_application()

# Step 05: Channels in front of Django. HTTP still goes to Django's application; a WebSocket
# goes, if its Origin is one of ours, through the auth middleware to a consumer picked by path.
# https://channels.readthedocs.io/en/stable/topics/routing.html

# Imported only now: get_asgi_application() above has set Django up, which these need.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import (  # noqa: E402
    AllowedHostsOriginValidator,
    WebsocketDenier,
)
from django.urls import path, re_path  # noqa: E402

from chat.consumers import ChatConsumer  # noqa: E402
from echo.consumers import EchoConsumer  # noqa: E402

django_http = application

websocket_urlpatterns = [
    path('ws/echo/', EchoConsumer.as_asgi()),
    path('ws/chat/<str:room_name>/', ChatConsumer.as_asgi()),
    # Any other path: refuse the handshake (HTTP 403), instead of URLRouter's error and a 500.
    re_path(r'', WebsocketDenier.as_asgi()),
]

application = ProtocolTypeRouter({
    'http': django_http,
    'websocket': AllowedHostsOriginValidator(
        AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    ),
})
