"""The peers table from runs made up here (no broker): run with
`python3 -m unittest discover -s benches/peers` (scripts/test does)."""
import unittest

import peers_table


def message_run(cpu, kernel=None, rate=10_000.0, accuracy=None):
    return {"msg_per_s": rate, "cpu_per_100k": cpu, "kernel_per_100k": kernel, "accuracy": accuracy}


def idle_run(rss, cpu, kernel=None, rate=7_500.0):
    return {"reached": 15_000, "rss_per_client": rss, "connects_per_s": rate,
            "cpu_per_1k_connects": cpu, "kernel_per_1k_connects": kernel}


class OneRound(unittest.TestCase):
    def test_a_row_reads_as_before_rounds(self):
        results = {"fleetsim": {"qos0": [message_run(1.04, 0.70, 9_999.97)],
                                "qos1": [message_run(2.005, 1.37)],
                                "idle": [idle_run(940.4, 0.052, 0.040, 7_472.3)]}}
        lines = peers_table.table(results, ["fleetsim"], 1).splitlines()
        self.assertEqual(lines[2], "| fleetsim | 1.04 (0.70; 10,000/s) | 2.00 (1.37; 10,000/s) | 940 | 7,472 "
                                   "| 0.052 (0.040) |")
        self.assertNotIn("median", lines[0])

    def test_a_tool_that_connected_too_few_says_how_many(self):
        results = {"locust": {"idle": [{"reached": 1_444}]}}
        row = peers_table.table(results, ["locust"], 1).splitlines()[2]
        self.assertEqual(row, "| locust | - | - | 1,444 clients of 15,000 in 120 s | - | - |")

    def test_a_run_without_a_steady_window_reads_as_a_dash(self):
        self.assertEqual(peers_table.message_cell([None]), "-")
        self.assertEqual(peers_table.message_cell([message_run(None, rate=0.0)]), "- (-; 0/s)")


class SeveralRounds(unittest.TestCase):
    def test_a_cell_is_the_median_with_the_lowest_and_highest(self):
        runs = [message_run(1.10, 0.71), message_run(0.98, 0.69), message_run(1.04, 0.70)]
        self.assertEqual(peers_table.message_cell(runs), "1.04 (0.70; 10,000/s; 0.98 to 1.10)")
        self.assertEqual(peers_table.header(3).count("median of 3 rounds"), 5)

    def test_rounds_that_connected_everyone_are_the_only_ones_counted(self):
        cells = peers_table.idle_cells([idle_run(940, 0.050), {"reached": 9_000}, idle_run(960, 0.054)])
        self.assertEqual(cells, ["950 (2 of 3 rounds connected all)", "7,500", "0.052 (-; 0.050 to 0.054)"])

    def test_fleetsim_is_paired_with_the_packet_floor_round_by_round(self):
        # Round 2 was slow for both: the ratio holds while the figures move.
        results = {"fleetsim": {"qos0": [message_run(1.0), message_run(1.5)],
                                "qos1": [message_run(2.0), None],
                                "idle": [idle_run(940, 0.05), idle_run(940, 0.06)]},
                   "packets": {"qos0": [message_run(0.8), message_run(1.2)],
                               "qos1": [message_run(1.25), message_run(1.3)],
                               "idle": [idle_run(212, 0.04), idle_run(212, 0.04)]}}
        line = peers_table.paired(results, ["fleetsim", "packets"])
        self.assertEqual(line, "fleetsim over the packet floor (each round's runs back to back, median of "
                               "2 rounds): QoS 0 1.25x, QoS 1 1.60x, CPU per 1,000 connects 1.38x "
                               "(1.25 to 1.50)")
        self.assertIsNone(peers_table.paired(results, ["fleetsim"]))

    def test_late_sends_add_up_over_the_rounds(self):
        def accurate(p99, late):
            return message_run(2.0, accuracy={"p99_ms": p99, "p99_9_ms": 5.0, "late_sends": late,
                                              "published": 325_800})
        results = {"fleetsim": {"qos1": [accurate(2.4, 0), accurate(2.61, 50), accurate(2.52, 0)]}}
        self.assertEqual(peers_table.accuracy_lines(results, ["fleetsim"]),
                         ["fleetsim qos1, whole runs, 3 rounds: publish p99 2.52 ms (2.40 to 2.61), "
                          "p99.9 5.00 ms; 50 late sends of 977,400 reports (by round: 0, 50, 0)"])

    def test_late_sends_say_how_many_woke_late(self):
        def accurate(late, woken):
            return message_run(2.0, accuracy={"p99_ms": 2.0, "p99_9_ms": 5.0, "late_sends": late,
                                              "woken_late": woken, "published": 1_000})
        results = {"fleetsim": {"qos1": [accurate(0, 0), accurate(50, 48)]}}
        self.assertEqual(peers_table.accuracy_lines(results, ["fleetsim"]),
                         ["fleetsim qos1, whole runs, 2 rounds: publish p99 2.00 ms, "
                          "p99.9 5.00 ms; 50 late sends of 2,000 reports (by round: 0, 50), 48 of them woken late"])
        on_time = {"fleetsim": {"qos1": [accurate(0, 0)]}}
        self.assertNotIn("woken", peers_table.accuracy_lines(on_time, ["fleetsim"])[0])


if __name__ == "__main__":
    unittest.main()
