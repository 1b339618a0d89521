"""Another web site, for real: a page served from loopback under a foreign host name that opens
a WebSocket to our server, as a cross-site WebSocket hijacking page would.

Browsers apply no CORS to WebSockets, so only the server's Origin check stands between such a
page and the socket. https://owasp.org/www-community/attacks/Cross_Site_WebSocket_Hijacking
"""

import http.server
import threading

from tests.system_tools import CHROMIUM_ARGS
from tools.server_process import HOST, free_port

# The foreign site's host name; `launch_chromium_resolving_foreign_site` maps it to loopback.
FOREIGN_HOST = "evil.example"


class ForeignSite:
    """An HTTP server on a free loopback port serving one page; `page_against(ws_url)` sets
    the WebSocket URL its script opens and returns the page's URL on the foreign host. The page
    lists what happens in `#events`: "open", then "closed with code N"."""

    def __init__(self):
        self.ws_url = None
        site = self

        class ForeignPage(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = site.page_html().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass  # the tests read the page, not this server's log

        self.server = http.server.ThreadingHTTPServer((HOST, free_port()), ForeignPage)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page_html(self):
        return f"""<!DOCTYPE html><ol id="events"></ol><script>
          const show = (text) => document.getElementById("events").append(text + "\\n");
          const socket = new WebSocket("{self.ws_url}");
          socket.addEventListener("open", () => show("open"));
          socket.addEventListener("close", (event) => show(`closed with code ${{event.code}}`));
        </script>"""

    def page_against(self, ws_url):
        self.ws_url = ws_url
        return f"http://{FOREIGN_HOST}:{self.server.server_address[1]}/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def launch_chromium_resolving_foreign_site(browser_type, executable_path):
    """A headless Chromium in which FOREIGN_HOST is 127.0.0.1, so a page on another site can be
    served from loopback (Chromium keeps public pages from reaching loopback at all)."""
    return browser_type.launch(
        executable_path=executable_path,
        headless=True,
        args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {FOREIGN_HOST} {HOST}"],
    )
