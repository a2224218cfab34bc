#!/usr/bin/env bash
# The peers benchmark: fleetsim beside the tools people use instead, each against its own fresh
# Mosquitto, at the same work, in one table (the method is at the top of benches/peers/peers.py):
#
#   benches/peers.sh                    # fleetsim, Locust's MQTT user, and two floors: mosquitto_pub
#                                       # on one connection, and fleetsim's packets on as many
#                                       # as fleetsim (benches/peers/floor.rs)
#   TOOLS=fleetsim benches/peers.sh     # one of them
#   WORKS=qos0,idle benches/peers.sh    # some of the work (qos0, qos1, idle)
#   IDLE_RATE=2000 benches/peers.sh     # idle clients asked for at 2,000 a second, not 20,000
#   ROUNDS=3 benches/peers.sh           # three runs of each, the tools taking turns: medians,
#                                       # ranges, and fleetsim over the packet floor round by round
#
# Installs what it needs first: Debian's mosquitto and mosquitto-clients (as scripts/test does),
# linux-perf (for the kernel's part of each CPU figure; sampling every core needs root or
# kernel.perf_event_paranoid at 0 or less), and Locust with paho-mqtt into a venv under
# target/bench-deps (pinned, so the figures compare across runs). About 16 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-reports/peers-$(date -u +%Y%m%dT%H%M%SZ)}
TOOLS=${TOOLS:-fleetsim,locust,floor,packets}
WORKS=${WORKS:-qos0,qos1,idle}
IDLE_RATE=${IDLE_RATE:-20000}
ROUNDS=${ROUNDS:-1}
VENV=target/bench-deps/locust
LOCUST_VERSION=2.47.0
PAHO_VERSION=2.1.0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
need_mosquitto=""
if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto >/dev/null 2>&1 && ! [ -x /usr/sbin/mosquitto ]; then
  need_mosquitto=1
fi
# perf samples the tools for the kernel's part of each CPU figure; without it that part reads -.
need_perf=""
command -v perf >/dev/null 2>&1 || need_perf=1
if [ -n "$need_mosquitto$need_perf" ]; then
  $sudo apt-get update
fi
if [ -n "$need_mosquitto" ]; then
  $sudo apt-get install -y --no-install-recommends mosquitto mosquitto-clients
fi
if [ -n "$need_perf" ]; then
  $sudo apt-get install -y --no-install-recommends linux-perf ||
    echo "peers.sh: linux-perf did not install; the kernel's part of each CPU figure will read -" >&2
fi
export PATH="$PATH:/usr/sbin"
if [[ ",$TOOLS," == *",locust,"* ]] && ! "$VENV/bin/python" -c 'import locust.contrib.mqtt' >/dev/null 2>&1; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "locust==$LOCUST_VERSION" "paho-mqtt==$PAHO_VERSION"
fi
# fleetsim as users build it (`cargo run --release`), on its own: built beside the floor, an
# example, it would take the dev-dependencies' features too (tokio's test-util, about 1% more
# instructions a message by benches/instructions.sh).
cargo build --release --quiet --bin fleetsim
cargo build --release --quiet --example peers-floor
mkdir -p "$OUT"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); $(mosquitto -h 2>/dev/null | head -1); $(date -u +%Y-%m-%d); reports: $OUT"
python3 benches/peers/peers.py --fleetsim target/release/fleetsim --venv "$(realpath -m "$VENV")" --out "$(realpath "$OUT")" --tools "$TOOLS" --works "$WORKS" --idle-rate "$IDLE_RATE" --rounds "$ROUNDS"
