#!/usr/bin/env python3
"""The harness's CPU per connect while devices arrived, from a run's summary.json: the CPU of
every second in which more than 50 devices connected, divided by the connects of those
seconds. It counts all the harness did in those seconds (the devices already connected, the
dashboard's second), so it is an upper bound on a connect's own cost; compare runs of the same
shape. Used by benches/scale.sh; by hand: python3 benches/connect_cpu.py SUMMARY.json..."""

import json
import sys


def connect_cpu(path):
    with open(path) as f:
        harness = json.load(f)["harness"]
    columns = harness["seconds_columns"]
    connects, cpu = columns.index("connects"), columns.index("cpu_s")
    spent, connected, before = 0.0, 0, 0.0
    for second in harness["seconds"]:
        if second[connects] > 50:
            spent += second[cpu] - before
            connected += second[connects]
        before = second[cpu]
    return (spent, connected) if connected else None


if __name__ == "__main__":
    for path in sys.argv[1:]:
        measured = connect_cpu(path)
        if measured is None:
            print(f"{path}: no second with more than 50 connects")
        else:
            spent, connected = measured
            print(f"{path}: {connected} connects while devices arrived, "
                  f"{spent * 1000 / connected:.3f} ms of harness CPU each")
