"""The forwarder run inside a sandbox: the sandbox's loopback port -> the model service's unix socket.

A standalone script with only the Python standard library (it runs with the image's ``python3``,
as the sandbox's user): ``python3 bridge_forwarder.py SOCKET PORT``. It listens on
``127.0.0.1:PORT`` in the sandbox's own network namespace, prints one ready line, and relays the
bytes of each connection to a new connection to ``SOCKET`` (a unix socket bound in from the host),
both ways, until either side closes. It opens nothing else: no egress beyond that socket.
Killing it only cuts the sandbox off its model service (the sandbox restarts it on its next command).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

CHUNK = 1 << 16


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF, then half-close ``dst`` (both closed by the last pump)."""
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _serve(conn: socket.socket, path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        conn.close()
        upstream.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
    back.start()
    _pump(conn, upstream)
    back.join()
    conn.close()
    upstream.close()


def main(argv: list[str]) -> int:
    """Listen, say so on stdout, then relay connections forever."""
    if len(argv) != 2:
        sys.stderr.write("usage: bridge_forwarder.py SOCKET PORT\n")
        return 2
    path, port = argv[0], int(argv[1])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    sys.stdout.write(f"rock-env forwarder listening on 127.0.0.1:{port}\n")
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # nobody reads the pipe after the ready line: never block on it
        os.dup2(null, fd)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(conn, path), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
