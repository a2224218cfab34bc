#!/usr/bin/env python3
"""The peers benchmark (run it through benches/peers.sh): fleetsim, Locust's MQTT user and a
mosquitto_pub floor, each against a fresh Mosquitto of its own, at the same work, and one table.

- Messages: 1,000 clients x 10 msg/s x 64 B, at QoS 0 and at QoS 1. The broker's own count of
  the PUBLISH packets it received ($SYS, once a second) is the truth for messages; a tool's CPU
  (user + system, its whole process tree, from /proc) is read at the same two $SYS updates, 20 s
  apart once the load is steady, and divided by the messages between them. The table gives the
  kernel's part beside it: the kernel's work for the tool's sockets (on loopback, that includes
  the broker's side of each segment), which any tool sending the same packets pays. That part
  is the share of `perf record` samples (997 a second on each core, `-a`) of the tool's
  processes that fell in the kernel, times the CPU figure: /proc's own split between user and
  system is sampled by the scheduler's tick (250 Hz on this machine's kernel), and a tool
  whose threads wake on a 4 ms grid wakes in step with that tick, so its split reads whatever
  the phase gives (all user in one run, half in another). Without a working `perf` the column
  reads "-".
- Idle clients: 15,000 clients asked for at 20,000 a second (`--idle-rate` for another rate). Memory per client is the tool's
  resident memory with 15,000 (10 s after the broker counts them all) less its memory with one,
  over 15,000. Connects per second and CPU per 1,000 connects run from the broker's first
  accepted connection to its 15,000th (its open sockets, polled every 10 ms: $SYS counts only
  once a second, too coarse for a burst that lasts about two), and the broker's $SYS count of
  connected clients must then reach 15,000.

After the table, fleetsim's own account of each message run, from the summary.json it writes
when stopped: publish p99 and p99.9 at QoS 1 and its late sends (reports sent more than 5 ms
after their intended instant), for the whole run up to the stop, ramp included.

Two floors. `floor` is mosquitto_pub -l, one client writing the lines another process feeds it:
one write per message, but on one connection, where the kernel packs many messages into a TCP
segment and acknowledges them together. `packets` is benches/peers/floor.rs (`peers-floor`):
fleetsim's own packets, on as many connections, from one thread doing nothing else; a segment
per message and its acknowledgement, as fleetsim pays. It takes part in the idle work too.

Rounds (`--rounds N`): each tool runs each work N times, the tools taking turns at one work
before the next work starts, in the reverse order every other round. The machine's speed drifts
between minutes (docs/scale.md has sittings 40% apart), so the table then gives each figure's
median with its lowest and highest, and one line gives fleetsim's CPU over the packet floor's,
each round's pair of runs back to back: the harness's own cost, the figure the drift moves
least. Every run's figures go to peers.json in --out; the table is peers_table.py's.
"""
import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

import peers_table
from peers_table import IDLE_CLIENTS, IDLE_DEADLINE

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WINDOW = (15.0, 35.0)  # seconds after the tool starts: the steady window
TOOL_NAMES = ("fleetsim", "locust", "floor", "packets")  # the methods of Tools
WORK_NAMES = ("qos0", "qos1", "idle")


def raise_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settle(limit=90):
    """Waits (up to `limit` s) until few sockets are left in TIME_WAIT: 15,000 clients just
    closed hold as many local ports for a minute, which the next run needs."""
    deadline = time.time() + limit
    while time.time() < deadline:
        waiting = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    waiting += sum(1 for line in f if line.split()[3:4] == ["06"])
            except OSError:
                pass
        if waiting < 1000:
            return
        time.sleep(1)


def tree(pid):
    """pid and its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except OSError:
            continue
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_seconds(pids):
    """CPU seconds the processes `pids` (a tool's tree) have used (user and system: their sum
    is the scheduler's exact count, their split is not, see the top)."""
    used = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            used += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return used / TICK


class KernelShare:
    """perf sampling every core while a tool runs, for the share of the tool's CPU that was
    the kernel's: samples of the tool's processes within a window of CLOCK_MONOTONIC (Python's
    time.monotonic), those at a kernel address over all."""

    FREQUENCY = 997  # a second on each core: in step with no tick or grid
    KERNEL = 0xFFFF800000000000  # x86-64 kernel addresses start here

    @staticmethod
    def works():
        try:
            return subprocess.run(["perf", "record", "-a", "-e", "cpu-clock", "-q", "-o", "/dev/null", "--", "true"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        except OSError:
            return False

    def __init__(self, workdir, name):
        self.path = os.path.join(workdir, f"perf-{name}.data")
        self.proc = subprocess.Popen(
            ["perf", "record", "-a", "-F", str(self.FREQUENCY), "-e", "cpu-clock", "-k", "CLOCK_MONOTONIC",
             "-q", "-o", self.path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # perf is sampling once it has opened its events

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait()

    def close(self):
        """Stops sampling and removes the samples (megabytes a run)."""
        self.stop()
        try:
            os.remove(self.path)
        except OSError:
            pass

    def share(self, pids, start, end):
        """The kernel's share of the samples of `pids` between `start` and `end`, or None
        without enough of them to say."""
        self.stop()
        script = subprocess.run(["perf", "script", "-i", self.path, "-F", "pid,time,ip"],
                                capture_output=True, text=True)
        kernel = total = 0
        for line in script.stdout.splitlines():
            try:
                pid, at, ip = line.replace(":", " ").split()
                if int(pid) not in pids or not start <= float(at) <= end:
                    continue
                in_kernel = int(ip, 16) >= self.KERNEL
            except ValueError:
                continue  # not a sample line
            total += 1
            kernel += in_kernel
        return kernel / total if total >= 100 else None


def mark(pid):
    """(time, CPU seconds, monotonic time, processes) of the tool `pid` now, from one /proc scan."""
    pids = tree(pid)
    return time.time(), cpu_seconds(pids), time.monotonic(), pids


def rss_bytes(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


class Broker:
    """A fresh Mosquitto on a free port, and a watcher of its $SYS counts."""

    def __init__(self, workdir, name):
        self.port = free_port()
        conf = os.path.join(workdir, f"mosquitto-{name}.conf")
        with open(conf, "w") as f:
            f.write(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_connections -1\nsys_interval 1\n"
            )
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", conf], preexec_fn=raise_files,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        self.updates = []  # (time, messages received, clients connected)
        self.cond = threading.Condition()
        self.hook = None  # called with each update
        self.sub = subprocess.Popen(
            ["mosquitto_sub", "-p", str(self.port), "-v",
             "-t", "$SYS/broker/publish/messages/received", "-t", "$SYS/broker/clients/connected"],
            stdout=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        messages, clients = 0, 0
        for line in self.sub.stdout:
            topic, _, value = line.strip().partition(" ")
            if topic.endswith("messages/received"):
                messages = int(value)
            else:
                # The watcher itself is a client.
                clients = max(int(value) - 1, 0)
            update = (time.time(), messages, clients)
            if self.hook:
                self.hook(update)
            with self.cond:
                self.updates.append(update)
                self.cond.notify_all()

    def wait(self, test, timeout):
        """The first update from the latest one on that passes `test`. The latest counts: $SYS
        publishes a count only when it changes, so one reached before the call may be the last."""
        deadline = time.time() + timeout
        seen = max(len(self.updates) - 1, 0)
        with self.cond:
            while time.time() < deadline:
                for update in self.updates[seen:]:
                    if test(update):
                        return update
                seen = len(self.updates)
                self.cond.wait(0.2)
        return None

    def sockets(self):
        """How many file descriptors the broker holds (its accepted connections, plus a few)."""
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return 0

    def stop(self):
        for p in (self.sub, self.proc):
            p.terminate()
            p.wait()


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            for p in reversed(tree(proc.pid)):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait()


class Tools:
    """How each tool is started for a piece of work against a broker's port."""

    def __init__(self, args):
        self.args = args

    def fleetsim(self, port, work, clients, out):
        scenario = os.path.join(HERE, {"qos0": "peers-qos0.toml", "qos1": "peers-qos1.toml",
                                       "idle": "peers-idle.toml"}[work])
        if work == "idle" and self.args.idle_rate != 20000:
            # The same scenario at another arrival rate, beside the run's reports.
            with open(scenario) as f:
                text = f.read()
            text = text.replace('rate = "20000/s"', f'rate = "{self.args.idle_rate}/s"')
            text = text.replace('models = "models"', f'models = "{os.path.join(HERE, "models")}"')
            scenario = os.path.join(out, "peers-idle.toml")
            with open(scenario, "w") as f:
                f.write(text)
        cmd = [self.args.fleetsim, "run", scenario, "--headless",
               "--backend", f"mqtt://127.0.0.1:{port}", "--out", out]
        if clients is not None:
            cmd += ["--devices", str(clients)]
        return subprocess.Popen(cmd, preexec_fn=raise_files, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def locust(self, port, work, clients, out):
        users = clients if clients is not None else (IDLE_CLIENTS if work == "idle" else 1000)
        # One Locust process holds about 6,600 clients (three files each): idle runs use four.
        processes = 4 if work == "idle" and users > 1 else 2
        env = dict(os.environ, PEERS_PORT=str(port), PEERS_QOS="1" if work == "qos1" else "0",
                   PEERS_IDLE="1" if work == "idle" else "0")
        rate = self.args.idle_rate if work == "idle" else 1000
        cmd = [os.path.join(self.args.venv, "bin", "locust"), "-f", os.path.join(HERE, "locustfile.py"),
               "--headless", "-u", str(users), "-r", str(rate), "-t", "240s", "--only-summary",
               "--processes", str(processes), "--skip-log-setup"]
        return subprocess.Popen(cmd, env=env, preexec_fn=raise_files, cwd=out,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def packets(self, port, work, clients, out):
        cmd = [self.args.packet_floor, "--port", str(port), "--work", work]
        if clients is not None:
            cmd += ["--clients", str(clients)]
        if work == "idle":
            cmd += ["--rate", str(self.args.idle_rate)]
        return subprocess.Popen(cmd, preexec_fn=raise_files, cwd=out,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def floor(self, port, work, clients, out):
        if work == "idle":
            return None
        qos = "1" if work == "qos1" else "0"
        pub = subprocess.Popen(
            ["mosquitto_pub", "-p", str(port), "-t", "peers/floor", "-q", qos, "-l"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        line = b"x" * 64 + b"\n"

        def feed():
            # 10,000 lines a second, in 100 batches of 100 a second.
            start = time.time()
            k = 0
            try:
                while pub.poll() is None:
                    k += 1
                    pub.stdin.write(line * 100)
                    pub.stdin.flush()
                    delay = start + k / 100 - time.time()
                    if delay > 0:
                        time.sleep(delay)
            except (BrokenPipeError, ValueError):
                pass

        threading.Thread(target=feed, daemon=True).start()
        return pub


def messages(tools, name, work, workdir, sampled, tag=""):
    settle()
    broker = Broker(workdir, f"{name}-{work}{tag}")
    perf = KernelShare(workdir, f"{name}-{work}{tag}") if sampled else None
    try:
        out = os.path.join(workdir, f"{name}-{work}{tag}")
        os.makedirs(out, exist_ok=True)
        proc = getattr(tools, name)(broker.port, work, None, out)
        start = time.time()
        marks = []  # (time, messages, CPU seconds, monotonic time, the tool's processes)

        def hook(update):
            if len(marks) < 2 and update[0] - start >= WINDOW[len(marks)]:
                pids = tree(proc.pid)
                marks.append((update[0], update[1], cpu_seconds(pids), time.monotonic(), pids))

        broker.hook = hook
        broker.wait(lambda u: len(marks) >= 2, WINDOW[1] + 20)
        stop(proc)
        if len(marks) < 2:
            return None
        (t0, m0, c0, s0, p0), (t1, m1, c1, s1, p1) = marks
        sent = m1 - m0
        if not sent:
            return {"msg_per_s": 0.0, "cpu_per_100k": None, "kernel_per_100k": None}
        share = perf.share(set(p0) | set(p1), s0, s1) if perf else None
        cpu = (c1 - c0) / sent * 100_000
        return {
            "msg_per_s": sent / (t1 - t0),
            "cpu_per_100k": cpu,
            "kernel_per_100k": None if share is None else cpu * share,
            "accuracy": accuracy(out, work) if name == "fleetsim" else None,
        }
    finally:
        if perf:
            perf.close()
        broker.stop()


def accuracy(out, work):
    """fleetsim's own account of its run (until it was stopped), from its summary: publish
    p99 and p99.9 (QoS 1 only: a QoS 0 publish has no answer to time) and its late sends, the
    reports it sent more than 5 ms after their intended instant, with those whose thread woke
    late (asleep at the instant, run only after it: the machine, not the harness's load)."""
    try:
        with open(os.path.join(out, "summary.json")) as f:
            metrics = json.load(f)["metrics"]
    except (OSError, ValueError, KeyError):
        return None
    counters = metrics.get("counters", {})
    publish = metrics.get("histograms", {}).get("publish.latency", {}) if work == "qos1" else {}
    return {"p99_ms": publish.get("p99_ms"), "p99_9_ms": publish.get("p99_9_ms"),
            "late_sends": counters.get("late_sends"), "woken_late": counters.get("late_sends.woken_late"),
            "published": counters.get("published")}


def idle(tools, name, workdir, sampled, tag=""):
    if name == "floor":
        return None
    settle()
    out = os.path.join(workdir, f"{name}-idle-1{tag}")
    os.makedirs(out, exist_ok=True)
    broker = Broker(workdir, f"{name}-idle-1{tag}")
    try:
        proc = getattr(tools, name)(broker.port, "idle", 1, out)
        broker.wait(lambda u: u[2] >= 1, 30)
        time.sleep(10)
        one = rss_bytes(proc.pid)
        stop(proc)
    finally:
        broker.stop()
    out = os.path.join(workdir, f"{name}-idle{tag}")
    os.makedirs(out, exist_ok=True)
    broker = Broker(workdir, f"{name}-idle{tag}")
    perf = KernelShare(workdir, f"{name}-idle{tag}") if sampled else None
    try:
        base = broker.sockets()
        proc = getattr(tools, name)(broker.port, "idle", None, out)
        first = full = None
        deadline = time.time() + IDLE_DEADLINE
        while full is None and time.time() < deadline and proc.poll() is None:
            accepted = broker.sockets() - base
            if first is None and accepted >= 1:
                first = mark(proc.pid)
            if accepted >= IDLE_CLIENTS:
                full = mark(proc.pid)
            time.sleep(0.01)
        counted = broker.wait(lambda u: u[2] >= IDLE_CLIENTS, 30) if full else None
        if counted is None:
            held = broker.updates[-1][2] if broker.updates else 0
            stop(proc)
            return {"reached": held}
        share = perf.share(set(first[3]) | set(full[3]), first[2], full[2]) if perf else None
        time.sleep(10)
        rss = rss_bytes(proc.pid)
        stop(proc)
        seconds = max(full[0] - first[0], 0.01)
        cpu = (full[1] - first[1]) / ((IDLE_CLIENTS - 1) / 1000)
        return {
            "reached": IDLE_CLIENTS,
            "rss_per_client": (rss - one) / IDLE_CLIENTS,
            "connects_per_s": (IDLE_CLIENTS - 1) / seconds,
            "cpu_per_1k_connects": cpu,
            "kernel_per_1k_connects": None if share is None else cpu * share,
        }
    finally:
        if perf:
            perf.close()
        broker.stop()


def schedule(names, works, rounds):
    """(round, work, tool), in the order they run: each work's runs back to back, so a tool
    and the one after it meet the same machine; every other round the tools in the reverse
    order, so no tool always goes first."""
    order = []
    for k in range(rounds):
        turn = names if k % 2 == 0 else names[::-1]
        order += [(k, work, name) for work in works for name in turn]
    return order


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fleetsim", required=True)
    parser.add_argument("--venv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--packet-floor", help="the peers-floor example (default: beside --fleetsim)")
    parser.add_argument("--tools", default=",".join(TOOL_NAMES))
    parser.add_argument("--works", default=",".join(WORK_NAMES))
    parser.add_argument("--idle-rate", type=int, default=20000, help="clients asked for a second (idle work)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of each tool at each work, the tools taking turns (each round in the "
                             "order the last one ended with); the table gives medians and ranges")
    args = parser.parse_args()
    names = args.tools.split(",")
    asked = args.works.split(",")
    works = [work for work in WORK_NAMES if work in asked]  # in the table's order
    unknown = [name for name in names if name not in TOOL_NAMES] + [work for work in asked if work not in WORK_NAMES]
    if unknown:
        sys.exit(f"peers.py: no tool or work named {', '.join(unknown)}: the tools are {', '.join(TOOL_NAMES)}; "
                 f"the works {', '.join(WORK_NAMES)}")
    if len(set(names)) < len(names):
        sys.exit("peers.py: a tool named twice in --tools; for more runs of each, give --rounds")
    if args.rounds < 1:
        sys.exit("peers.py: --rounds must be at least 1")
    os.makedirs(args.out, exist_ok=True)
    if args.packet_floor is None:
        args.packet_floor = os.path.join(os.path.dirname(args.fleetsim), "examples", "peers-floor")
    args.packet_floor = os.path.realpath(args.packet_floor)  # it runs in its output folder
    if "packets" in names and not os.access(args.packet_floor, os.X_OK):
        sys.exit(f"peers.py: no packet floor at {args.packet_floor}: build it with "
                 "`cargo build --release --example peers-floor` (benches/peers.sh does), or leave "
                 "`packets` out of --tools")
    tools = Tools(args)
    sampled = KernelShare.works()
    if not sampled:
        print("perf cannot sample every core here (install linux-perf; run as root or set "
              "kernel.perf_event_paranoid to 0 or less): the kernel's part reads -", file=sys.stderr)
    results = {name: {work: [] for work in works} for name in names}
    for k, work, name in schedule(names, works, args.rounds):
        tag = "" if args.rounds == 1 else f"-round{k + 1}"
        if work == "idle":
            run = idle(tools, name, args.out, sampled, tag)
        else:
            run = messages(tools, name, work, args.out, sampled, tag)
        results[name][work].append(run)
        print(f"round {k + 1}, {name} {work}: {run}", file=sys.stderr, flush=True)
    with open(os.path.join(args.out, "peers.json"), "w") as f:
        json.dump({"rounds": args.rounds, "tools": names, "works": works, "idle_rate": args.idle_rate,
                   "runs": results}, f, indent=1)
    print(peers_table.table(results, names, args.rounds))
    ratio = peers_table.paired(results, names)
    if ratio:
        print(ratio)
    for line in peers_table.accuracy_lines(results, names):
        print(line)


if __name__ == "__main__":
    main()
