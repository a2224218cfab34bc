#!/usr/bin/env bash
# Instructions a message: the user-space instructions fleetsim runs per message the broker got,
# at the peers benchmark's message works (benches/peers.sh), counted by Valgrind's callgrind
# over 10 s of steady state, with the functions that take the most. Unlike the peers CPU
# figures, which move by a third between sittings of the same machine, the count barely moves
# from run to run: a change to the publish path shows in it at once (docs/scale.md, "Counting
# instructions").
#
#   benches/instructions.sh                 # QoS 0, then QoS 1
#   WORKS=qos0 benches/instructions.sh      # one of them
#   DEVICES=100 benches/instructions.sh     # clients (default 200: callgrind runs the harness
#                                           # some 50 times slower, so 1,000 would fall behind)
#   FLEETSIM=path benches/instructions.sh   # another build, made as below
#
# Valgrind cannot run fleetsim's usual build (rustix reads the vDSO by hand, where valgrind
# maps none): the script builds one with rustix over libc (RUSTFLAGS=--cfg=rustix_use_libc)
# in target/instructions, its own target folder. Installs valgrind and Debian's mosquitto when
# missing. Reports under OUT (default reports/instructions-<UTC time>). About 2 minutes a work
# once built (the build: about 10 minutes cold on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-reports/instructions-$(date -u +%Y%m%dT%H%M%SZ)}
WORKS=${WORKS:-qos0,qos1}
DEVICES=${DEVICES:-200}
PORT=${PORT:-18883}

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
packages=()
command -v valgrind >/dev/null 2>&1 || packages+=(valgrind)
if ! command -v mosquitto_sub >/dev/null 2>&1 || ! { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }; then
  packages+=(mosquitto mosquitto-clients)
fi
if [ ${#packages[@]} -gt 0 ]; then
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends "${packages[@]}"
fi
export PATH="$PATH:/usr/sbin"
if [ -z "${FLEETSIM:-}" ]; then
  CARGO_TARGET_DIR=target/instructions RUSTFLAGS="--cfg=rustix_use_libc" \
    cargo build --release --quiet -p fleetsim --bin fleetsim
  FLEETSIM=target/instructions/release/fleetsim
fi
mkdir -p "$OUT"
OUT=$(realpath "$OUT")

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT

# The broker's count of PUBLISH packets received, from its next $SYS update.
published() {
  mosquitto_sub -p "$PORT" -t '$SYS/broker/publish/messages/received' -C 1 -W 5
}

echo "machine: $(nproc) cores; $(valgrind --version); $(git rev-parse --short HEAD); reports: $OUT"
for work in ${WORKS//,/ }; do
  dir="$OUT/$work"
  mkdir -p "$dir"
  printf "listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nsys_interval 1\n" "$PORT" > "$dir/mosquitto.conf"
  mosquitto -c "$dir/mosquitto.conf" > "$dir/mosquitto.log" 2>&1 &
  broker=$!
  PIDS+=("$broker")
  sleep 0.5
  # Counted only from the steady state on: the arrivals (5 s) and the first reports are done.
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out" \
    "$FLEETSIM" run "benches/peers/peers-$work.toml" --headless --devices "$DEVICES" \
    --backend "mqtt://127.0.0.1:$PORT" --out "$dir/report" > "$dir/fleetsim.log" 2>&1 &
  harness=$!
  PIDS+=("$harness")
  sleep 20
  before=$(published)
  callgrind_control -i on "$harness" > /dev/null 2>&1
  sleep 10
  callgrind_control -d "$harness" > /dev/null 2>&1
  callgrind_control -i off "$harness" > /dev/null 2>&1
  after=$(published)
  wait "$harness" || true
  kill "$broker" 2>/dev/null || true
  wait "$broker" 2>/dev/null || true
  dump=$(ls "$dir"/callgrind.out.* | head -1)
  messages=$((after - before))
  callgrind_annotate --inclusive=yes "$dump" 2>/dev/null > "$dir/inclusive.txt" || true
  python3 - "$dir/inclusive.txt" "$messages" "$work" "$DEVICES" <<'PY'
import re, sys
path, messages, work, devices = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = []
for line in open(path, errors="replace"):
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
    if m:
        rows.append((int(m.group(1).replace(",", "")), m.group(2)))
total = next((n for n, what in rows if what.startswith("PROGRAM TOTALS")), 0)
if not total or messages <= 0:
    sys.exit(f"{work}: nothing counted ({messages} messages; see {path})")
print(f"{work}, {devices} clients: {total / messages:,.0f} instructions a message "
      f"({total:,} over {messages:,} messages)")
# fleetsim's own functions, each once (inlined copies share a name), most first.
seen = set()
for n, what in rows:
    name = re.sub(r"^\S*?:", "", what.split(" [")[0])
    if "fleetsim::" not in name or name in seen:
        continue
    seen.add(name)
    print(f"  {n / messages:8,.0f}  {name}")
    if len(seen) == 15:
        break
PY
done
