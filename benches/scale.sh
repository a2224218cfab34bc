#!/usr/bin/env bash
# The scale benchmark: every scale figure of docs/scale.md and the README, measured by real runs, printed as one
# table at the end. Servers run in processes of their own, so the harness's figures are its own.
#
#   benches/scale.sh               # all of it, about 20 minutes on 2 cores
#   benches/scale.sh connected     # 19,000 connected devices in one process, then 100,000
#                                  # with --workers 6 against six Mosquitto processes
#   benches/scale.sh tls           # 15,000 devices over mutual TLS, each its own certificate,
#                                  # against one Mosquitto with require_certificate: idle, then
#                                  # busy beside the same busy fleet in plaintext
#   benches/scale.sh handshakes    # storms of full and of resumed mutual-TLS handshakes
#                                  # against Mosquitto, ECDSA P-256 and RSA-2048 devices: the
#                                  # harness's CPU per handshake
#   benches/scale.sh lwm2m         # 15,000 LwM2M devices registered and idle, each on a UDP
#                                  # socket of its own, against lwm2m-node-lib; a storm of
#                                  # 15,000 registrations at 5,000 a second against the
#                                  # reference backend; 100,000 registered over --workers 6
#   benches/scale.sh mqtt5         # 15,000 meters idle on Mosquitto, then busy (5,000 msg/s),
#                                  # speaking MQTT 5 and again 3.1.1: what MQTT 5 costs
#   benches/scale.sh sleeping      # 10,000,000 duty-cycled devices against the reference backend
#   SLEEPY_1M=1 benches/scale.sh sleeping   # also scenarios/million-sleepy.toml (31 minutes)
#
# One process may open 20,000 files on our machines, so one harness process holds about 19,000
# connections and past that the fleet runs as worker processes; each Mosquitto holds up to
# 19,900, hence six of them for 100,000 devices. Needs Debian's mosquitto (scripts/test
# installs it). Columns: harness memory growth per device (connected, or asleep), peak connect
# rate, messages published per second, the harness's CPU, and that CPU per 1,000 messages a second.
# The timer heap at 10M entries has its own criterion bench: cargo bench -p fleetsim --bench timers
set -euo pipefail
cd "$(dirname "$0")/.."

WHAT=${1:-all}
OUT=${OUT:-reports/scale-$(date -u +%Y%m%dT%H%M%SZ)}
BIN=target/release/fleetsim
MOSQUITTO=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
mkdir -p "$OUT"
cargo build --release --quiet

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
ROWS=()
STATUS=0

# The first number after "KEY": in JSON file $1 ("-" when absent or null).
field() {
  local value
  value=$(grep -m1 "\"$2\":" "$1" 2>/dev/null | sed 's/.*: *\([0-9.]*\).*/\1/')
  echo "${value:--}"
}

# The resident memory of process $1, sampled every 2 s into file $2 (largest kept).
watch_rss() {
  local pid=$1 file=$2 max=0 kib
  while kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null); do
    [ -n "$kib" ] && [ "$kib" -gt "$max" ] && max=$kib && echo "$max" > "$file"
    sleep 2
  done
}

# Waits (up to 90 s) until fewer than 1,000 sockets are in TIME_WAIT. A run's closed
# connections stay there a minute, and the kernel reaps thousands at once from a timer, taking
# a core for milliseconds: a run started just after another counted late sends at that moment.
settle() {
  for _ in $(seq 90); do
    [ "$(awk '$4 == "06"' /proc/net/tcp /proc/net/tcp6 2>/dev/null | wc -l)" -lt 1000 ] && return
    sleep 1
  done
}

# Runs `fleetsim run` with args $2... into $OUT/$1 once the last run's connections are gone
# (settle), prints what is not a progress line, and adds a row to the table (server memory
# from $OUT/$1.server_kib when a server was watched).
run() {
  local name=$1 status=0
  shift
  settle
  "$BIN" run "$@" --headless --out "$OUT/$name" > "$OUT/$name.log" 2>&1 || status=$?
  grep -v '^\[' "$OUT/$name.log" || true
  local s="$OUT/$name/summary.json" cores per1k
  cores=$(field "$s" cores)
  per1k=$(field "$s" cores_per_1k_msg_per_s)
  ROWS+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$name" \
    "$(field "$s" peak_connected)" "$(field "$s" bytes_per_connected_device)" \
    "$(field "$s" peak_sleeping)" "$(field "$s" bytes_per_sleeping_device)" \
    "$(field "$s" connect_peak_per_s)" "$(field "$s" publish_per_s)" \
    "$(awk -v c="$cores" 'BEGIN { if (c == "-") print "-"; else printf "%.0f%%", c * 100 }')" \
    "$(awk -v c="$per1k" 'BEGIN { if (c == "-") print "-"; else printf "%.1f%%", c * 100 }')")")
  [ "$status" -eq 0 ] || STATUS=$status
}

# Starts Mosquitto on port $1, as many connections as its open files allow.
mosquitto_on() {
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\n' "$1" \
    > "$OUT/mosquitto-$1.conf"
  (ulimit -n "$(ulimit -Hn)"; exec "$MOSQUITTO" -c "$OUT/mosquitto-$1.conf") > "$OUT/mosquitto-$1.log" 2>&1 &
  PIDS+=($!)
}

# Starts Mosquitto on port $1 over TLS with the CA folder $2 (`fleetsim ca`): devices must
# present a certificate from that CA, and their common name is their user name.
mosquitto_tls_on() {
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nset_tcp_nodelay true\ncafile %s/ca.pem\ncertfile %s/server.pem\nkeyfile %s/server.key\nrequire_certificate true\nuse_identity_as_username true\n' \
    "$1" "$2" "$2" "$2" > "$OUT/mosquitto-$1.conf"
  # As root, Mosquitto would drop to its own user, which may not read the server's key.
  [ "$(id -u)" -eq 0 ] && echo "user root" >> "$OUT/mosquitto-$1.conf"
  (ulimit -n "$(ulimit -Hn)"; exec "$MOSQUITTO" -c "$OUT/mosquitto-$1.conf") > "$OUT/mosquitto-$1.log" 2>&1 &
  PIDS+=($!)
}

# Starts the reference backend in its own process, with the options after $1; sets BACKEND
# (pid) and HTTP (its API).
backend() {
  local name=$1
  shift
  "$BIN" backend --data "$OUT/backend-$name" --mqtt 127.0.0.1:0 --http 127.0.0.1:0 "$@" > "$OUT/backend-$name.log" &
  BACKEND=$!
  PIDS+=("$BACKEND")
  for _ in $(seq 50); do grep -q "http " "$OUT/backend-$name.log" && break; sleep 0.1; done
  HTTP=$(sed -n 's/.*, http \([0-9.:]*\),.*/\1/p' "$OUT/backend-$name.log")
}

if [ -z "$MOSQUITTO" ]; then
  echo "mosquitto is not installed (apt-get install mosquitto): the broker figures need it" >&2
  exit 1
fi

if [ "$WHAT" = all ] || [ "$WHAT" = connected ]; then
  echo "== 19,000 connected devices, one process, against the reference backend in its own process"
  backend idle
  watch_rss "$BACKEND" "$OUT/backend.rss_kib" &
  PIDS+=($!)
  run idle-19k-reference scenarios/scale-idle.toml --backend "http://$HTTP"
  echo "reference backend peak RSS: $(cat "$OUT/backend.rss_kib") KiB"
  kill "$BACKEND"

  echo "== 19,000 connected devices, one process, against one Mosquitto"
  mosquitto_on 18830
  sleep 0.5
  run idle-19k-mosquitto scenarios/scale-idle-broker.toml --backend mqtt://127.0.0.1:18830
  run busy-19k-mosquitto scenarios/scale-busy-broker.toml --backend mqtt://127.0.0.1:18830

  echo "== 100,000 connected devices: --workers 6 against six Mosquitto processes"
  for port in 18831 18832 18833 18834 18835 18836; do mosquitto_on "$port"; done
  sleep 0.5
  run idle-100k-workers scenarios/scale-100k-workers.toml --workers 6
  run busy-100k-workers scenarios/scale-100k-workers.toml --workers 6 --time-scale 30
fi

if [ "$WHAT" = all ] || [ "$WHAT" = tls ]; then
  echo "== 15,000 devices over mutual TLS, each its own certificate, against one Mosquitto"
  OUT=$(cd "$OUT" && pwd)
  "$BIN" ca "$OUT/ca" > /dev/null
  mosquitto_tls_on 18840 "$OUT/ca"
  # Written here rather than shipped: it names this run's CA folder. The plaintext twin is the
  # same fleet without TLS, for the busy comparison.
  fleet_15k() { # $1: name, $2: url, $3: the [backend.tls] section (or nothing)
    cat <<EOF
[scenario]
name = "$1"
description = "15,000 always-connected meters on an MQTT broker, held idle (or busy with --time-scale 300)"
seed = 23
duration = "90s"
models = "$PWD/device-models"

[backend]
kind = "mqtt"
url = "$2"
telemetry_topic = "scale/{group}/{serial}/telemetry"
$3

[fleet]
devices = 15000
arrival = { rate = "400/s" }
mix = [ { model = "mains-meter", share = 1.0, group = "meters" } ]

[gates]
"devices.online" = ">= 14850"
"connect.latency.p99" = "<= 1s"
"errors.total" = "== 0"
EOF
  }
  fleet_15k scale-idle-tls mqtts://127.0.0.1:18840 \
    "$(printf '[backend.tls]\nca = "%s/ca/server-ca.pem"\nfleet_ca = "%s/ca"\nserver_name = "localhost"' "$OUT" "$OUT")" \
    > "$OUT/scale-idle-tls.toml"
  fleet_15k scale-idle-plain mqtt://127.0.0.1:18841 "" > "$OUT/scale-idle-plain.toml"
  sleep 0.5
  run idle-15k-tls "$OUT/scale-idle-tls.toml"
  # The same with no session kept to resume: what keeping Mosquitto's ticket costs.
  sed 's/^name = "scale-idle-tls"/name = "scale-idle-tls-noresume"/; s/^server_name = "localhost"/&\nresumption = "off"/' \
    "$OUT/scale-idle-tls.toml" > "$OUT/scale-idle-tls-noresume.toml"
  run idle-15k-tls-noresume "$OUT/scale-idle-tls-noresume.toml"
  # The same fleet reporting every 3 s (about 5,000 messages a second), and beside it the same
  # work in plaintext against a Mosquitto of its own: the CPU a message's TLS costs.
  run busy-15k-tls "$OUT/scale-idle-tls.toml" --time-scale 300
  mosquitto_on 18841
  sleep 0.5
  run busy-15k-plain "$OUT/scale-idle-plain.toml" --time-scale 300

  echo "== 15,000 devices over TLS against the reference backend in its own process (--mqtts)"
  "$BIN" backend --data "$OUT/backend-tls" --mqtt 127.0.0.1:0 --http 127.0.0.1:0 --mqtts 127.0.0.1:0 \
    > "$OUT/backend-tls.log" &
  BACKEND=$!
  PIDS+=("$BACKEND")
  for _ in $(seq 50); do grep -q "mqtts " "$OUT/backend-tls.log" && break; sleep 0.1; done
  HTTP=$(sed -n 's/.*, http \([0-9.:]*\),.*/\1/p' "$OUT/backend-tls.log")
  MQTTS=$(sed -n 's/.*: mqtts \([0-9.:]*\),.*/\1/p' "$OUT/backend-tls.log")
  watch_rss "$BACKEND" "$OUT/backend-tls.rss_kib" &
  PIDS+=($!)
  fleet_15k scale-idle-tls-reference "mqtts://$MQTTS" \
    "$(printf 'api = "http://%s"\n[backend.tls]\nca = "%s/backend-tls/tls/server-ca.pem"' "$HTTP" "$OUT")" |
    sed 's/^kind = "mqtt"/kind = "embedded"/; /^telemetry_topic/d' > "$OUT/scale-idle-tls-reference.toml"
  run idle-15k-tls-reference "$OUT/scale-idle-tls-reference.toml"
  echo "reference backend over TLS, peak RSS: $(cat "$OUT/backend-tls.rss_kib") KiB"
  kill "$BACKEND"
  # What a connect cost the harness while devices arrived (busy TLS against busy plaintext:
  # the same arrivals and messages, so the difference is TLS's).
  python3 benches/connect_cpu.py "$OUT"/{busy-15k-tls,busy-15k-plain,idle-15k-tls,idle-15k-tls-reference}/summary.json
fi

if [ "$WHAT" = all ] || [ "$WHAT" = handshakes ]; then
  echo "== Storms of mutual-TLS handshakes against one Mosquitto: full and resumed, ECDSA and RSA"
  OUT=$(cd "$OUT" && pwd)
  [ -d "$OUT/ca" ] || "$BIN" ca "$OUT/ca" > /dev/null
  mosquitto_tls_on 18842 "$OUT/ca"
  # A fleet arrives (each device's first connect: its identity made, a full handshake), sits
  # connected, and at $6 s a 5 s outage cuts every device off; the reconnect storm after it is
  # all full handshakes (resumption off) or all resumed ones (on). RSA devices arrive slowly:
  # each generates its key at its first connect (87 ms).
  storm() { # $1: name, $2: key, $3: resumption, $4: devices, $5: arrival rate, $6: outage at (s)
    cat <<EOF
[scenario]
name = "$1"
seed = 29
duration = "$(($6 + 25))s"
models = "$PWD/device-models"

[backend]
kind = "mqtt"
url = "mqtts://127.0.0.1:18842"
telemetry_topic = "storm/{group}/{serial}/telemetry"

[backend.tls]
ca = "$OUT/ca/server-ca.pem"
fleet_ca = "$OUT/ca"
server_name = "localhost"
device_key = "$2"
resumption = "$3"

[fleet]
devices = $4
arrival = { rate = "$5" }
mix = [ { model = "mains-meter", share = 1.0, group = "meters" } ]

[[phase]]
at = "${6}s"
action = "outage"
share = "100%"
duration = "5s"

[gates]
"errors.total" = "== 0"
"reconnect.recovery" = "<= 20s"
EOF
  }
  storm hs-ecdsa-resumed ecdsa-p256 on 2000 200/s 20 > "$OUT/hs-ecdsa-resumed.toml"
  storm hs-ecdsa-full ecdsa-p256 off 2000 200/s 20 > "$OUT/hs-ecdsa-full.toml"
  storm hs-rsa-resumed rsa-2048 on 400 8/s 55 > "$OUT/hs-rsa-resumed.toml"
  storm hs-rsa-full rsa-2048 off 400 8/s 55 > "$OUT/hs-rsa-full.toml"
  sleep 0.5
  for name in hs-ecdsa-resumed hs-ecdsa-full hs-rsa-resumed hs-rsa-full; do
    run "$name" "$OUT/$name.toml"
  done
  # The harness's CPU a connect while the fleet arrived (first connects) and in the storm.
  python3 benches/connect_cpu.py --split 20 "$OUT"/hs-ecdsa-{resumed,full}/summary.json
  # RSA fleets are smaller (their keys take long to make): seconds of more than 20 connects.
  python3 benches/connect_cpu.py --split 55 --min 20 "$OUT"/hs-rsa-{resumed,full}/summary.json
fi

if [ "$WHAT" = all ] || [ "$WHAT" = lwm2m ]; then
  echo "== 15,000 LwM2M devices registered and idle, against lwm2m-node-lib in its own process"
  LWM2M_MODULES=$PWD/target/test-deps/lwm2m-node/node_modules
  if ! NODE_PATH="$LWM2M_MODULES" node -e "require('lwm2m-node-lib')" 2>/dev/null; then
    echo "lwm2m-node-lib is not installed in $LWM2M_MODULES: scripts/test installs it" >&2
    exit 1
  fi
  # The wrapper reads commands on its standard input and exits when it closes: hold it open.
  mkfifo "$OUT/lwm2m.in"
  NODE_PATH="$LWM2M_MODULES" node sim/tests/lwm2m-node/server.js --port 15683 \
    < "$OUT/lwm2m.in" > "$OUT/lwm2m.log" 2>/dev/null &
  PIDS+=($!)
  exec 7> "$OUT/lwm2m.in"
  for _ in $(seq 50); do grep -q listening "$OUT/lwm2m.log" && break; sleep 0.1; done
  run idle-15k-lwm2m scenarios/scale-idle-lwm2m.toml --backend coap://127.0.0.1:15683
  echo "lwm2m-node-lib saw $(grep -c '"event":"registration"' "$OUT/lwm2m.log") registrations"
  exec 7>&-

  echo "== 15,000 LwM2M registrations at 5,000 a second, against the reference backend in its own process"
  backend register-lwm2m --lwm2m 127.0.0.1:0
  for _ in $(seq 50); do grep -q "lwm2m " "$OUT/backend-register-lwm2m.log" && break; sleep 0.1; done
  BEFORE=$(awk '{print $14 + $15}' "/proc/$BACKEND/stat")
  run register-15k-lwm2m scenarios/scale-register-lwm2m.toml --backend "http://$HTTP"
  echo "reference backend CPU for the storm: $(awk -v b="$BEFORE" -v hz="$(getconf CLK_TCK)" \
    '{printf "%.2f s", ($14 + $15 - b) / hz}' "/proc/$BACKEND/stat")"
  kill "$BACKEND"

  echo "== 100,000 LwM2M devices registered: --workers 6 sharing the reference backend the parent starts"
  run idle-100k-lwm2m scenarios/scale-100k-lwm2m.toml --workers 6
fi

if [ "$WHAT" = all ] || [ "$WHAT" = mqtt5 ]; then
  echo "== 15,000 meters on Mosquitto: MQTT 5 (topic alias, message expiry, a user property) against 3.1.1"
  OUT=$(cd "$OUT" && pwd)
  mkdir -p "$OUT/models"
  # The scale scenarios' meter, and the same meter speaking MQTT 5 with what a v5 device sends.
  cp device-models/mains-meter.toml "$OUT/models/"
  sed 's/^name = "mains-meter"/name = "mains-meter-5"/' device-models/mains-meter.toml > "$OUT/models/mains-meter-5.toml"
  printf '\n[mqtt]\nversion = 5\nsession_expiry = "1h"\ntopic_alias = true\nmessage_expiry = "10m"\nuser_properties = { site = "lab-3" }\n' \
    >> "$OUT/models/mains-meter-5.toml"
  for version in 5 311; do
    model=mains-meter; [ "$version" = 5 ] && model=mains-meter-5
    sed "s/^name = \"scale-idle-broker\"/name = \"mqtt$version-15k\"/; s/^devices = 19000/devices = 15000/; \
         s/\"devices.online\" = \">= 18810\"/\"devices.online\" = \">= 14850\"/; s/model = \"mains-meter\"/model = \"$model\"/" \
      scenarios/scale-idle-broker.toml > "$OUT/mqtt$version-15k.toml"
  done
  port=18850
  for version in 5 311; do
    # A fresh broker each: what one fleet left behind (sessions kept an hour) does not weigh on the next.
    mosquitto_on "$port"
    sleep 0.5
    run "idle-15k-mqtt$version" "$OUT/mqtt$version-15k.toml" --models "$OUT/models" --backend "mqtt://127.0.0.1:$port"
    port=$((port + 1))
    mosquitto_on "$port"
    sleep 0.5
    # Every 3 s a meter at 300x: about 5,000 messages a second.
    run "busy-15k-mqtt$version" "$OUT/mqtt$version-15k.toml" --models "$OUT/models" --backend "mqtt://127.0.0.1:$port" --time-scale 300
    port=$((port + 1))
  done
fi

if [ "$WHAT" = all ] || [ "$WHAT" = sleeping ]; then
  echo "== 10,000,000 duty-cycled devices asleep between reports (reference backend in its own process)"
  backend sleepy10m
  run sleepy-10m scenarios/ten-million-sleepy.toml --backend "http://$HTTP"
  kill "$BACKEND"
  if [ "${SLEEPY_1M:-0}" = 1 ]; then
    echo "== 1,000,000 duty-cycled devices, every one provisioned and reporting"
    backend sleepy1m
    run sleepy-1m scenarios/million-sleepy.toml --backend "http://$HTTP"
    kill "$BACKEND"
  fi
fi

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); reports: $OUT"
echo "| run | connected | B per connected device | asleep | B per sleeping device | connects/s (peak) | msg/s | harness CPU (of a core) | CPU per 1,000 msg/s |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
exit $STATUS
