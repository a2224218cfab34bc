"""The peers benchmark's table and the lines after it, from its runs (benches/peers/peers.py
measures; this only summarises, so it is tested without a broker: test_peers_table.py).

`results[tool][work]` is the list of that tool's runs of that work, one a round, in order; a
run is the dict `peers.messages()` or `peers.idle()` returned, or None when it gave nothing.
Over several rounds a figure is the median of the rounds, and a CPU figure also gives its
lowest and highest: the machine's speed drifts between minutes, so one run of each tool can
mislead, and the same round's runs of two tools, back to back, compare best.
"""
import statistics

IDLE_CLIENTS = 15_000
IDLE_DEADLINE = 120  # seconds a tool has to connect them all
LABELS = {
    "floor": "floor, one connection (`mosquitto_pub -l`)",
    "packets": "floor at fleetsim's packets (`peers-floor`)",
}
WORKS = ("qos0", "qos1")


def label(tool):
    return LABELS.get(tool, tool)


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def spread(values):
    """(median, lowest, highest) of the values that are not None, or None without any."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def figure(runs, key):
    return spread((run or {}).get(key) for run in runs)


def with_range(found, spec, unit=""):
    """'2.52 ms' for one value, '2.52 ms (2.40 to 2.61)' for a median over several."""
    if found is None:
        return "-"
    middle, low, high = found
    text = format(middle, spec) + unit
    if low != high:
        text += f" ({span(low, high, spec)})"
    return text


def median(found):
    return None if found is None else found[0]


def lowest_to_highest(found, spec):
    """'; 0.98 to 1.10' after a median over rounds that differed, else nothing."""
    _, low, high = found
    return "" if low == high else f"; {span(low, high, spec)}"


def span(low, high, spec):
    """'0.98 to 1.10'."""
    return f"{format(low, spec)} to {format(high, spec)}"


def header(rounds):
    over = "" if rounds == 1 else f", median of {rounds} rounds"
    ranged = "" if rounds == 1 else "; lowest to highest"
    return (f"| tool | CPU-s per 100k QoS 0 msgs{over} (kernel's part; msg/s{ranged}) "
            f"| CPU-s per 100k QoS 1 msgs{over} (kernel's part; msg/s{ranged}) "
            f"| B per idle client{over} | connects/s{over} | CPU-s per 1,000 connects{over} (kernel's part{ranged}) |\n"
            "|---|---|---|---|---|---|")


def message_cell(runs):
    cpu = figure(runs, "cpu_per_100k")
    rate = figure(runs, "msg_per_s")
    if cpu is None:
        # No run reached its steady window, or the broker counted nothing in it.
        return "-" if rate is None else f"- (-; {rate[0]:,.0f}/s)"
    kernel = figure(runs, "kernel_per_100k")
    return (f"{cpu[0]:.2f} ({fmt(median(kernel), '.2f')}; {fmt(median(rate), ',.0f')}/s"
            f"{lowest_to_highest(cpu, '.2f')})")


def idle_cells(runs):
    """Bytes per idle client, connects a second, CPU per 1,000 connects: medians of the rounds
    whose tool connected every client; without any, how many the best round reached."""
    whole = [run for run in runs if run and "rss_per_client" in run]
    if not whole:
        reached = [run["reached"] for run in runs if run]
        if not reached:
            return ["-", "-", "-"]
        return [f"{max(reached):,} clients of {IDLE_CLIENTS:,} in {IDLE_DEADLINE} s", "-", "-"]
    rss = figure(whole, "rss_per_client")
    rate = figure(whole, "connects_per_s")
    cpu = figure(whole, "cpu_per_1k_connects")
    kernel = figure(whole, "kernel_per_1k_connects")
    cells = [fmt(rss[0], ",.0f"), fmt(rate[0], ",.0f")]
    if cpu is None:
        cells.append("-")
    else:
        cells.append(f"{cpu[0]:.3f} ({fmt(median(kernel), '.3f')}{lowest_to_highest(cpu, '.3f')})")
    if len(whole) < len(runs):
        cells[0] += f" ({len(whole)} of {len(runs)} rounds connected all)"
    return cells


def table(results, tools, rounds):
    lines = [header(rounds)]
    for tool in tools:
        runs = results[tool]
        cells = [label(tool)] + [message_cell(runs.get(work, [])) for work in WORKS]
        cells += idle_cells(runs.get("idle", []))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(results, tool, base, work, key):
    """`tool`'s figure over `base`'s, round by round (each pair ran back to back)."""
    pairs = zip(results.get(tool, {}).get(work, []), results.get(base, {}).get(work, []))
    return [a[key] / b[key] for a, b in pairs if a and b and a.get(key) and b.get(key)]


def paired(results, tools):
    """fleetsim's CPU over the packet floor's (fleetsim's own packets, nothing else), the same
    round's runs: the share of its CPU that is the harness's own work, the figure that drifts
    least with the machine's speed. None unless both ran."""
    if "fleetsim" not in tools or "packets" not in tools:
        return None
    parts = []
    for name, work, key in (("QoS 0", "qos0", "cpu_per_100k"), ("QoS 1", "qos1", "cpu_per_100k"),
                            ("CPU per 1,000 connects", "idle", "cpu_per_1k_connects")):
        found = spread(ratios(results, "fleetsim", "packets", work, key))
        if found is not None:
            parts.append(f"{name} {with_range(found, '.2f', 'x')}")
    if not parts:
        return None
    rounds = max(len(results["fleetsim"].get(work, [])) for work in (*WORKS, "idle"))
    over = "each round's runs back to back" + ("" if rounds == 1 else f", median of {rounds} rounds")
    return f"fleetsim over the packet floor ({over}): " + ", ".join(parts)


def accuracy_lines(results, tools):
    """fleetsim's own account of each message run: publish p99 and p99.9 at QoS 1 (the median
    of the rounds, and their range) and the late sends of all of them, with how many of those
    woke late (from a fleetsim that counts it)."""
    lines = []
    for tool in tools:
        for work in WORKS:
            found = [run["accuracy"] for run in results[tool].get(work, []) if run and run.get("accuracy")]
            if not found:
                continue
            p99 = spread(a["p99_ms"] for a in found)
            p99_9 = spread(a["p99_9_ms"] for a in found)
            timing = "" if p99 is None else \
                f"publish p99 {with_range(p99, '.2f', ' ms')}, p99.9 {with_range(p99_9, '.2f', ' ms')}; "
            late = [a["late_sends"] for a in found]
            published = [a["published"] for a in found]
            if None in late or None in published:
                sends = "late sends -"
            else:
                sends = f"{sum(late):,} late sends of {sum(published):,} reports"
                if len(found) > 1:
                    sends += " (by round: " + ", ".join(f"{n:,}" for n in late) + ")"
                woken = [a.get("woken_late") for a in found]
                if sum(late) and None not in woken:
                    # The thread asleep at the instant and run only after it: the machine.
                    sends += f", {sum(woken):,} of them woken late"
            runs = "whole run" if len(found) == 1 else f"whole runs, {len(found)} rounds"
            lines.append(f"{label(tool)} {work}, {runs}: {timing}{sends}")
    return lines
