#!/usr/bin/env bash
# The scale figure: devices connected and held idle by one harness process, against the
# reference backend running in its own process and against Mosquitto, with the harness's
# memory per connected device, its connect rate and its message rate.
#
#   benches/scale.sh            # 19,000 devices each, held 75 s (scenarios/scale-idle*.toml)
#   DEVICES=5000 DURATION=30s benches/scale.sh
#
# One process may open 20,000 files on our machines, so 19,000 devices is about as many as
# one harness process can connect; the backend and the broker each run in a process of their
# own for the same reason. Needs Debian's mosquitto (scripts/test installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-75s}
DEVICES=${DEVICES:-19000}
OUT=${OUT:-reports/scale-$(date -u +%Y%m%dT%H%M%SZ)}
BIN=target/release/fleetsim
MOSQUITTO=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
mkdir -p "$OUT"
cargo build --release --quiet

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT

# The resident memory of process $1, sampled every 2 s into file $2 (largest kept).
watch_rss() {
  local pid=$1 file=$2 max=0 kib
  while kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null); do
    [ -n "$kib" ] && [ "$kib" -gt "$max" ] && max=$kib && echo "$max" > "$file"
    sleep 2
  done
}

# Runs scenario $1 against backend URL $2 into $OUT/$3; prints what is not a progress line.
run() {
  local status=0
  "$BIN" run "$1" --backend "$2" --devices "$DEVICES" --duration "$DURATION" --out "$OUT/$3" \
    > "$OUT/$3.log" || status=$?
  grep -v '^\[' "$OUT/$3.log"
  return $status
}

echo "== the reference backend (fleetsim backend), in its own process"
"$BIN" backend --data "$OUT/backend-data" --mqtt 127.0.0.1:0 --http 127.0.0.1:0 > "$OUT/backend.log" &
BACKEND=$!
PIDS+=("$BACKEND")
for _ in $(seq 50); do grep -q "http " "$OUT/backend.log" && break; sleep 0.1; done
HTTP=$(sed -n 's/.*, http \([0-9.:]*\),.*/\1/p' "$OUT/backend.log")
watch_rss "$BACKEND" "$OUT/backend.rss_kib" &
PIDS+=($!)
STATUS=0
run scenarios/scale-idle.toml "http://$HTTP" reference || STATUS=$?
echo "backend peak RSS: $(cat "$OUT/backend.rss_kib") KiB"
kill "$BACKEND"

if [ -z "$MOSQUITTO" ]; then
  echo "mosquitto is not installed (apt-get install mosquitto): the broker figure is skipped" >&2
  exit 1
fi
echo "== Mosquitto ($("$MOSQUITTO" -h 2>/dev/null | head -1 || true))"
PORT=$((20000 + RANDOM % 20000))
while (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n' "$PORT" \
  > "$OUT/mosquitto.conf"
(ulimit -n "$(ulimit -Hn)"; exec "$MOSQUITTO" -c "$OUT/mosquitto.conf") > "$OUT/mosquitto.log" 2>&1 &
BROKER=$!
PIDS+=("$BROKER")
sleep 0.5
watch_rss "$BROKER" "$OUT/mosquitto.rss_kib" &
PIDS+=($!)
run scenarios/scale-idle-broker.toml "mqtt://127.0.0.1:$PORT" broker || STATUS=$?
echo "mosquitto peak RSS: $(cat "$OUT/mosquitto.rss_kib") KiB"
echo "== Mosquitto, the same fleet busy (a report every 3 s from each device)"
run scenarios/scale-busy-broker.toml "mqtt://127.0.0.1:$PORT" busy || STATUS=$?

echo "reports: $OUT"
exit $STATUS
