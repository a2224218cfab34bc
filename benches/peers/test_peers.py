"""The order of the peers benchmark's runs (no broker): run with
`python3 -m unittest discover -s benches/peers` (scripts/test does)."""
import unittest

import peers


class Schedule(unittest.TestCase):
    def test_the_tools_take_turns_at_each_work_and_swap_the_lead_every_round(self):
        order = peers.schedule(["fleetsim", "packets"], ["qos0", "idle"], 2)
        self.assertEqual(order, [(0, "qos0", "fleetsim"), (0, "qos0", "packets"),
                                 (0, "idle", "fleetsim"), (0, "idle", "packets"),
                                 (1, "qos0", "packets"), (1, "qos0", "fleetsim"),
                                 (1, "idle", "packets"), (1, "idle", "fleetsim")])

    def test_one_round_runs_each_tool_once_at_each_work(self):
        self.assertEqual(peers.schedule(["fleetsim"], ["qos0", "qos1"], 1),
                         [(0, "qos0", "fleetsim"), (0, "qos1", "fleetsim")])


if __name__ == "__main__":
    unittest.main()
