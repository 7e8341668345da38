#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in for the kubelet's read-only pod list, for flowstat's tests (Kubernetes itself
cannot run on the test machine).

  kubelet_standin.py CERT KEY TOKEN_FILE PODS_FILE [PORT]

Serves GET /pods over HTTPS (CERT/KEY, TLS 1.2+) on 127.0.0.1:PORT (0: any free port) and
prints "ready PORT". Like the kubelet, it answers 401 to a request without the bearer
token, which it reads from TOKEN_FILE at every request (so a test can rotate it), 403 to
the token in TOKEN_FILE's directory's `forbidden-token` (an account without the RBAC grant
nodes/proxy), and 404 to other paths. The answer is PODS_FILE as it is at the request, so a test changes the pod
list by rewriting the file. Each request is logged on stderr: "GET /pods 200".
"""
import http.server
import os
import ssl
import sys


def main():
    cert, key, token_file, pods_file = sys.argv[1:5]
    port = int(sys.argv[5]) if len(sys.argv) > 5 else 0

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            with open(token_file) as f:
                token = f.read().strip()
            try:
                with open(os.path.join(os.path.dirname(token_file), "forbidden-token")) as f:
                    forbidden = f.read().strip()
            except FileNotFoundError:
                forbidden = None
            sent = self.headers.get("Authorization")
            if forbidden and sent == "Bearer " + forbidden:
                self.answer(403, b"Forbidden (user=system:serviceaccount:flowstat:flowstat, verb=get, resource=nodes, subresource(s)=[proxy])", "text/plain")
            elif sent != "Bearer " + token:
                self.answer(401, b"Unauthorized", "text/plain")
            elif self.path.split("?")[0] != "/pods":
                self.answer(404, b"404 page not found", "text/plain")
            else:
                with open(pods_file, "rb") as f:
                    self.answer(200, f.read(), "application/json")

        def answer(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s %s\n" % (self.command, self.path, args[1] if len(args) > 1 else "-"))
            sys.stderr.flush()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
