"""`make run STEP=03 SERVER=daphne`: serve one step until Ctrl-C, and say where to look."""

import argparse
import signal
import sys
import time

from step_server import HOST, SERVERS, step_server


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step", required=True, help="01 to 05")
    parser.add_argument("--server", choices=SERVERS, default="runserver")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    server = step_server(args.step, args.server, port=args.port)
    print(f"$ cd {server.cwd.name} && {' '.join(server.argv)}", flush=True)
    # Stop the server on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    shown = 0
    # Everything from the start on is inside try, so a Ctrl-C at any moment stops the server.
    try:
        server.start()
        shown = show_new_output(server, shown)
        print(f"\nServing {server.cwd.name} with {args.server}: open http://{HOST}:{args.port}/", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        while server.process.poll() is None:
            shown = show_new_output(server, shown)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        show_new_output(server, shown)


def show_new_output(server, shown):
    """Passes the server's log through; returns how much of it has been shown."""
    log = server.log_text()
    print(log[shown:], end="", flush=True)
    return len(log)

if __name__ == "__main__":
    main()
