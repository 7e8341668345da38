#!/usr/bin/env python3
"""Scrapes flowstat over ONE kept-alive HTTP connection, so that scraping adds no TCP
flow of its own between two scrapes (host-wide flow counters stay exact).

  keepalive_scrape.py HOST PORT
      for each line on stdin: GET /metrics, print one JSON object mapping each
      flow-count series (tcp_flows*, closed-flow histogram counts, tcp_peer_flows*,
      flowstat_events_lost_total; name plus labels, as written) to its value.
"""
import http.client
import json
import sys


KEPT = ("tcp_flows", "tcp_flow_duration_seconds_count", "tcp_flow_bytes_count", "tcp_peer_flows",
        "flowstat_events_lost_total")


def main(host, port):
    connection = http.client.HTTPConnection(host, port, timeout=60)
    for _ in sys.stdin:
        connection.request("GET", "/metrics", headers={"Connection": "keep-alive"})
        response = connection.getresponse()
        body = response.read().decode()
        if response.status != 200 or response.will_close:
            sys.exit(f"scrape failed or the server closed the connection: {response.status}")
        series = {}
        for line in body.splitlines():
            if line.startswith(KEPT):
                name, _, value = line.rpartition(" ")
                series[name] = float(value)
        print(json.dumps(series), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
