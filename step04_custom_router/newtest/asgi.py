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

# Step 04: Django serves HTTP only, so a small router in front of it answers every other
# kind of connection. Django's docs allow exactly this: wrap `application` in ASGI middleware.
# https://docs.djangoproject.com/en/3.0/howto/deployment/asgi/#applying-asgi-middleware

from newtest.websocket_echo import websocket_echo  # noqa: E402 (imported once Django is set up)

django_http = application


async def route_by_scope_type(scope, receive, send):
    """The ASGI application the servers run: one explicit answer per kind of connection."""
    if scope["type"] == "http":
        await django_http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket_echo(scope, receive, send)
    elif scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
    else:
        raise ValueError(f"newtest.asgi has no route for {scope['type']!r} connections.")


async def answer_lifespan(receive, send):
    """Nothing to set up or tear down, and the server is told so (uvicorn asks; daphne does not)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


application = route_by_scope_type
