"""The floor for Python itself: the `websockets` library's own echo server, no ASGI, no Django.

This is the echo example from https://websockets.readthedocs.io/en/stable/ with a port option.
Run it as `python websockets_echo_server.py --port 8765`.
"""

import argparse
import asyncio

from websockets.asyncio.server import serve


async def echo(websocket):
    async for message in websocket:
        await websocket.send(message)


async def main(host, port):
    async with serve(echo, host, port) as server:
        print(f"websockets echo server listening on ws://{host}:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
