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
    server.start()
    print(server.log_text(), end="", flush=True)
    print(f"\nServing {server.cwd.name} with {args.server}: open http://{HOST}:{args.port}/", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    # Stop the server on Ctrl-C and on SIGTERM alike, and pass its log through meanwhile.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    shown = len(server.log_text())
    try:
        while server.process.poll() is None:
            log = server.log_text()
            print(log[shown:], end="", flush=True)
            shown = len(log)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(server.log_text()[shown:], end="", flush=True)


if __name__ == "__main__":
    main()
