#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Long-lived loopback TCP flows with a little traffic, for scripts/bench.py.

  bench_flows.py server ADDR PORT
      accepts flows and echoes what it reads; prints "ready" once listening.
  bench_flows.py client SRC_PREFIX DST_ADDR DST_PORT COUNT PERIOD
      opens COUNT flows to DST_ADDR:DST_PORT from the source addresses
      SRC_PREFIX.1 ... SRC_PREFIX.250 (many 127.x.y.z sources, so the load is not
      bounded by one ephemeral port range), prints "connected", then sends 16 bytes
      on every flow once per PERIOD seconds (spread over the period) and reads the
      echoes.

Both exit when their standard input closes (the harness holds the other end), so
they never outlive it. Stdlib only; one epoll loop per process.
"""
import os
import selectors
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # Linux: pick the port at connect(), per 4-tuple
PAYLOAD = b"0123456789abcdef"


def serve(addr, port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    listener.listen(4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "listen")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "listen":
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    return
            else:
                conn = key.fileobj
                try:
                    data = conn.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    conn.close()
                    continue
                try:
                    conn.send(data)
                except OSError:
                    pass


def client(src_prefix, addr, port, count, period):
    flows = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((f"{src_prefix}.{1 + i % 250}", 0))
        for attempt in range(50):
            try:
                sock.connect((addr, port))
                break
            except (ConnectionRefusedError, TimeoutError, BlockingIOError):
                # The server's accept queue was full: back off and retry.
                time.sleep(0.02 * (attempt + 1))
        else:
            raise SystemExit(f"bench_flows: cannot connect flow {i} to {addr}:{port}")
        sock.setblocking(False)
        flows.append(sock)
    sel = selectors.DefaultSelector()
    for sock in flows:
        sel.register(sock, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    print("connected", flush=True)

    ticks = 20  # send on 1/ticks of the flows every period/ticks seconds
    tick = 0
    next_tick = time.monotonic()
    while True:
        timeout = max(0.0, next_tick - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.data == "stdin":
                if not os.read(sys.stdin.fileno(), 4096):
                    return
                continue
            try:
                key.fileobj.recv(4096)
            except OSError:
                pass
        if time.monotonic() >= next_tick:
            for sock in flows[tick::ticks]:
                try:
                    sock.send(PAYLOAD)
                except OSError:
                    pass
            tick = (tick + 1) % ticks
            next_tick += period / ticks


def main(argv):
    if len(argv) == 4 and argv[1] == "server":
        serve(argv[2], int(argv[3]))
    elif len(argv) == 7 and argv[1] == "client":
        client(argv[2], argv[3], int(argv[4]), int(argv[5]), float(argv[6]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
