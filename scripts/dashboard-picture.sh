#!/usr/bin/env bash
# Makes docs/dashboard.png, the README's picture of the live dashboard, from a real run: the
# quickstart (scenarios/quickstart.toml) runs in a detached tmux pane of a fixed size; at 1m17s
# of run time, two seconds after its outage ends, while the cut-off devices reconnect and after
# its OTA campaign halted, the pane is captured with its colours
# (`tmux capture-pane -e`), scripts/ansi_to_html.py turns the capture into one HTML page, and
# headless Chromium screenshots the page. Then `q` stops the run and the tmux server goes.
#
#   scripts/dashboard-picture.sh [OUTPUT.png]        # default docs/dashboard.png
#
# Takes about 80 s after the build (the run's first 77 s, then stopping it); the build,
# `cargo build --release`, runs first unless FLEETSIM names a binary to use instead.
# Settings from the environment: AT (seconds of run time to capture at, default 77),
# WIDTH and HEIGHT (the pane, default 140x36), FLEETSIM (a fleetsim binary).
# Needs tmux, chromium (Debian's; scripts/test installs both), python3 and the DejaVu fonts.
set -euo pipefail

cd "$(dirname "$0")/.."
output=${1:-docs/dashboard.png}
at=${AT:-77}
width=${WIDTH:-140}
height=${HEIGHT:-36}

for tool in tmux chromium python3; do
    command -v "$tool" >/dev/null || { echo "dashboard-picture: needs $tool" >&2; exit 2; }
done

if [[ -z ${FLEETSIM:-} ]]; then
    nice -n 10 cargo build --release --quiet
    FLEETSIM=target/release/fleetsim
fi
fleetsim=$(realpath "$FLEETSIM")

scratch=$(mktemp -d)
socket=fleetsim-picture-$$
tmux() { command tmux -L "$socket" "$@"; }
cleanup() {
    tmux kill-server 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

# The pane keeps its shell open after the run so that its end can be seen.
tmux new-session -d -s run -x "$width" -y "$height" \
    "nice -n 10 '$fleetsim' run scenarios/quickstart.toml --out '$scratch/run'; echo \"fleetsim exited \$?\"; sleep 600"

screen() { tmux capture-pane -p -t run; }

# Seconds of run time on the header ("1m17s of 1m40s (23s left)"), or nothing before it shows.
elapsed() {
    local shown seconds=0
    shown=$(screen | head -1 | grep -oE '([0-9]+[hms])+ of ([0-9]+[hms])+ \(' | cut -d' ' -f1) || true
    [[ -n $shown ]] || return 0
    [[ $shown =~ ([0-9]+)h ]] && seconds=$((seconds + BASH_REMATCH[1] * 3600))
    [[ $shown =~ ([0-9]+)m ]] && seconds=$((seconds + BASH_REMATCH[1] * 60))
    [[ $shown =~ ([0-9]+)s ]] && seconds=$((seconds + BASH_REMATCH[1]))
    echo "$seconds"
}

deadline=$((SECONDS + at + 120))
while :; do
    now=$(elapsed)
    if [[ -n $now ]] && ((now >= at)); then
        break
    fi
    if ((SECONDS > deadline)) || screen | grep -q 'fleetsim exited'; then
        echo "dashboard-picture: the run never reached ${at}s; the pane:" >&2
        screen >&2
        exit 1
    fi
    sleep 0.2
done
# -e: with colours and attributes; -N: keep trailing spaces (cells with a background).
tmux capture-pane -e -N -p -t run >"$scratch/screen.ansi"

tmux send-keys -t run q
stop_deadline=$((SECONDS + 60))
until screen | grep -q 'fleetsim exited'; do
    if ((SECONDS > stop_deadline)); then
        echo "dashboard-picture: the run did not stop within 60 s of q" >&2
        break
    fi
    sleep 0.5
done

python3 scripts/ansi_to_html.py "$width" "$height" <"$scratch/screen.ansi" >"$scratch/screen.html"
size=$(python3 scripts/ansi_to_html.py --size "$width" "$height")
mkdir -p "$(dirname "$output")"
if ! nice -n 10 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$scratch/chromium" --force-device-scale-factor=1 \
    --window-size="$size" --screenshot="$(realpath -m "$output")" \
    "file://$scratch/screen.html" >"$scratch/chromium.log" 2>&1; then
    cat "$scratch/chromium.log" >&2
    exit 1
fi
echo "dashboard-picture: wrote $output ($(stat -c %s "$output") bytes, ${size/,/x} px) at ${at}s of the quickstart"
