#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Real TCP peers for flowstat's privileged tests, run inside network namespaces.

  tcp_peer.py serve ADDR PORT          accept flows, read them to EOF; prints "ready"
  tcp_peer.py connect ADDR PORT N BYTES
      opens N flows, sends BYTES on each, waits until all is acknowledged, then
      prints one JSON line [{"local": [ip, port], "remote": [ip, port]}, ...] and
      obeys stdin: "send BYTES" sends more on every flow, waits for the ACKs and
      prints "sent"; "close K" closes the first K flows and prints "closed";
      end of input closes everything and exits.
      If the ACKs do not all come within 30 s, it prints the failure on stderr and
      exits 1 instead of printing the JSON line or "sent".
  tcp_peer.py connect-thread NAME ADDR PORT N BYTES
      as connect, from a thread named NAME (the process keeps its name)
  tcp_peer.py churn ADDR PORT K
      opens K short flows one after another (connect, send a byte, close) and prints
      "done K" once the last is closed.
  tcp_peer.py slow-serve ADDR PORT RCVBUF CHUNK PAUSE
      as serve, but each accepted flow has SO_RCVBUF RCVBUF (set on the listener, so the
      window is small from the handshake on) and is read CHUNK bytes every PAUSE seconds:
      a slow reader whose receive window fills up.
  tcp_peer.py stream ADDR PORT SNDBUF
      opens one flow (SO_SNDBUF SNDBUF before connect unless 0), prints its JSON line as
      connect does, then writes to it as fast as the flow takes data until end of input.
  tcp_peer.py trickle ADDR PORT BYTES PAUSE
      opens one flow, prints its JSON line, then sends BYTES every PAUSE seconds until end
      of input: a request/response-like flow that is mostly idle.
"""
import json
import os
import socket
import sys
import threading
import time


def serve(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    listener.listen(1024)
    print("ready", flush=True)

    def drain(conn):
        with conn:
            while conn.recv(1 << 16):
                pass

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def unacked_bytes(sock):
    # TIOCOUTQ: bytes not yet acknowledged by the peer (Linux).
    import fcntl
    import struct
    return struct.unpack("i", fcntl.ioctl(sock, 0x5411, b"\0\0\0\0"))[0]


ACK_TIMEOUT = 30  # seconds: generous for a veth pair, even behind the tests' token bucket


def send_and_wait(flows, size):
    """Sends `size` bytes on every flow and waits until the peer has acknowledged all of
    them. If some are still unacknowledged after ACK_TIMEOUT seconds, says so on stderr and
    exits 1 without printing the line the caller waits for: its next readLine() gets the
    end of output instead of a success."""
    payload = b"f" * size
    for sock in flows:
        sock.sendall(payload)
    deadline = time.monotonic() + ACK_TIMEOUT
    while True:
        pending = [(s, unacked_bytes(s)) for s in flows]
        pending = [(s, n) for s, n in pending if n]
        if not pending:
            return
        if time.monotonic() >= deadline:
            details = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]} {n} bytes" for s, n in pending[:5])
            sys.stderr.write(f"tcp_peer.py: {len(pending)} of {len(flows)} flows still have unacknowledged "
                             f"bytes after {ACK_TIMEOUT} s: {details}\n")
            sys.stderr.flush()
            sys.exit(1)
        time.sleep(0.01)


def connect(addr, port, count, size):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    flows = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.connect((addr, port))
        flows.append(sock)
    send_and_wait(flows, size)
    print(json.dumps([{"local": list(s.getsockname()[:2]), "remote": list(s.getpeername()[:2])}
                      for s in flows]), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["send"]:
            send_and_wait(flows, int(words[1]))
            print("sent", flush=True)
        elif words[:1] == ["close"]:
            k = int(words[1])
            for sock in flows[:k]:
                sock.close()
            flows = flows[k:]
            print("closed", flush=True)
    for sock in flows:
        sock.close()


def connect_from_thread(name, addr, port, count, size):
    """connect(), from a thread the kernel knows as `name` (prctl PR_SET_NAME): the process
    keeps its own name, as a server's I/O threads do."""
    import ctypes

    def run():
        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)
        connect(addr, port, count, size)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def churn(addr, port, count):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    for _ in range(count):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.connect((addr, port))
            sock.sendall(b"c")
    print(f"done {count}", flush=True)


def slow_serve(addr, port, rcvbuf, chunk, pause):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    listener.bind((addr, port))
    listener.listen(16)
    print("ready", flush=True)

    def drain(conn):
        with conn:
            while conn.recv(chunk):
                time.sleep(pause)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def flow_line(sock):
    return json.dumps([{"local": list(sock.getsockname()[:2]), "remote": list(sock.getpeername()[:2])}])


def run_until_eof(sock, work):
    """Runs work() in a loop on a thread until end of input, then closes the flow."""
    stop = threading.Event()

    def loop():
        try:
            while not stop.is_set():
                work()
        except OSError:
            pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    sys.stdin.read()
    stop.set()
    # Unblocks a writer waiting for buffer space; close() alone would wait for it.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
    os._exit(0)


def stream(addr, port, sndbuf):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.connect((addr, port))
    print(flow_line(sock), flush=True)
    payload = b"s" * (1 << 16)
    run_until_eof(sock, lambda: sock.sendall(payload))


def trickle(addr, port, size, pause):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.connect((addr, port))
    print(flow_line(sock), flush=True)
    payload = b"t" * size

    def send_one():
        sock.sendall(payload)
        time.sleep(pause)

    run_until_eof(sock, send_one)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif mode == "connect":
        connect(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif mode == "connect-thread":
        connect_from_thread(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif mode == "churn":
        churn(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "slow-serve":
        slow_serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
    elif mode == "stream":
        stream(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "trickle":
        trickle(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(f"unknown mode {mode!r}; see the docstring")
