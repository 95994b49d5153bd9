#!/usr/bin/env python3
"""Exports topologies from the PyPI package `topohub` as NetworkX node-link JSON files for the
simulator (the data is not vendored: install the package, run this, point a scenario at the
file).

    pip install topohub
    python3 simulations/scripts/topohub-export.py [OUT_DIR]   # default target/topologies
"""
import json
import os
import sys

import topohub

GRAPHS = {
    "topozoo-TataNld": "topozoo/TataNld",
    "caida-7018": "caida/2024-08/7018",
    "caida-3356": "caida/2024-08/3356",
}

out = sys.argv[1] if len(sys.argv) > 1 else "target/topologies"
os.makedirs(out, exist_ok=True)
for name, key in GRAPHS.items():
    t = topohub.get(key)
    doc = {
        "directed": False,
        "nodes": [{"id": n["id"]} for n in t["nodes"]],
        "edges": [{"source": e["source"], "target": e["target"]} for e in t["edges"]],
        "graph": {"source": f"topohub {topohub.__version__}: {key}"},
    }
    path = os.path.join(out, f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    print(f"{path}: {len(doc['nodes'])} nodes, {len(doc['edges'])} edges ({key})")
