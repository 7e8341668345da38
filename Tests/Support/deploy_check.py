#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Helpers for flowstat's deployment-kit tests (Debian python3 and python3-yaml).

  deploy_check.py yaml FILE      every YAML document of FILE, as one JSON array
  deploy_check.py names FILE     the metric names each PromQL expression of FILE reads, as
                                 JSON {"<where>: <expr>": [names]}; FILE is a Grafana
                                 dashboard (.json) or a Prometheus rules file (.yml)
"""
import json
import re
import sys

import yaml

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "inf", "nan", "Inf", "NaN"}


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside {} or by/without/on/ignoring lists), durations or variables."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{[^}]*\}|\$\w+", "0", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        before = e[m.start() - 1] if m.start() > 0 else " "
        if before.isdigit() or before == ".":
            continue  # a duration unit (5m) or an exponent (1e3)
        after = e[m.end():].lstrip()
        if after.startswith("("):
            continue  # a function or aggregation
        if m.group() in KEYWORDS:
            continue
        names.add(m.group())
    return sorted(names)


def dashboard_exprs(path):
    with open(path) as f:
        dashboard = json.load(f)
    found = {}

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if "expr" in target:
                    found[f"panel {panel.get('title')!r}: {target['expr']}"] = target["expr"]
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and isinstance(query, str):
            m = re.match(r"\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$", query)
            found[f"variable {variable['name']}: {query}"] = m.group(1) if m else query
    return found


def rule_exprs(path):
    with open(path) as f:
        rules = yaml.safe_load(f)
    found = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            what = rule.get("record") or rule.get("alert")
            found[f"rule {what}: {rule['expr']}"] = rule["expr"]
    return found


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "yaml":
        with open(path) as f:
            print(json.dumps(list(yaml.safe_load_all(f))))
    elif mode == "names":
        exprs = dashboard_exprs(path) if path.endswith(".json") else rule_exprs(path)
        print(json.dumps({where: metric_names(expr) for where, expr in exprs.items()}))
    else:
        sys.exit(f"unknown mode {mode!r}; see the docstring")
