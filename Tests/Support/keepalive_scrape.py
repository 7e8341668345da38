#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Scrapes flowstat over ONE kept-alive HTTP connection, so that scraping adds no TCP
flow of its own between two scrapes (host-wide flow counters stay exact).

  keepalive_scrape.py HOST PORT
      for each line on stdin: GET /metrics, print one JSON object mapping each
      flow-count series (tcp_flows*, closed-flow histogram counts, tcp_peer_flows*,
      flowstat_events_lost_total; name plus labels, as written) to its value.
"""
import http.client
import json
import os
import sys
import threading
import time


KEPT = ("tcp_flows", "tcp_flow_duration_seconds_count", "tcp_flow_bytes_count", "tcp_peer_flows",
        "flowstat_events_lost_total")


def main(host, port):
    connection = http.client.HTTPConnection(host, port, timeout=60)
    lock = threading.Lock()

    def get():
        with lock:
            connection.request("GET", "/metrics", headers={"Connection": "keep-alive"})
            response = connection.getresponse()
            body = response.read().decode()
        if response.status != 200 or response.will_close:
            print(f"scrape failed or the server closed the connection: {response.status}", file=sys.stderr)
            os._exit(1)
        return body

    # The agent closes keep-alive connections idle for 2 minutes; a long wait between two
    # asked-for scrapes must not cost the connection (a new one would be a new flow).
    def keep_warm():
        while True:
            time.sleep(30)
            get()

    threading.Thread(target=keep_warm, daemon=True).start()
    for _ in sys.stdin:
        body = get()
        series = {}
        for line in body.splitlines():
            if line.startswith(KEPT):
                name, _, value = line.rpartition(" ")
                series[name] = float(value)
        print(json.dumps(series), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
