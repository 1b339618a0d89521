"""The HTTP floor for runserver: runserver's own server class serving a bare WSGI page.

`manage.py runserver` is Django's threaded WSGIServer (built on the standard library's
wsgiref) calling Django. This runs the same server, started the way runserver starts it,
with a WSGI callable that returns a fixed page, so the difference to the step's figure is
what Django's request handling, middleware and template cost. See
https://docs.djangoproject.com/en/stable/ref/django-admin/#runserver
Run it as `python bare_wsgi_page.py --port 8000`.
"""

import argparse

import django
from bare_asgi_echo import PAGE
from django.conf import settings
from django.core.servers.basehttp import run


def bare_page(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(PAGE))),
        ],
    )
    return [PAGE]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # runserver logs one line per request through Django's default logging, which
    # django.setup() installs; the floor does the same, with no apps and no URLs.
    settings.configure(DEBUG=True)
    django.setup()
    print(f"bare WSGI page on http://{args.host}:{args.port}/", flush=True)
    run(args.host, args.port, bare_page, threading=True)
