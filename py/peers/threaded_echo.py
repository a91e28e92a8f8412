"""An echo server with one thread per connection: blocking calls, no event loop at all.

    python -m peers.threaded_echo --port 0

Each client costs a thread (a stack, a kernel task, a context switch per message); this is
what the reactor avoids, and what the notebooks count in /proc/PID/task.
"""
from __future__ import annotations

import argparse
import socket
import threading


def serve_client(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(65536):  # blocks this thread only
                conn.sendall(data)
        except ConnectionError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    threading.stack_size(256 * 1024)  # 1,000 clients must fit comfortably
    with socket.create_server(("127.0.0.1", args.port), backlog=4096) as server:
        print(f"listening on 127.0.0.1:{server.getsockname()[1]}", flush=True)
        try:
            while True:
                conn, _ = server.accept()
                threading.Thread(target=serve_client, args=(conn,), daemon=True).start()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
