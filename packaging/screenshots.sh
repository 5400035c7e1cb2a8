#!/bin/sh
# Regenerates docs/screenshots/*.png: the real app in a virtual X display (Xvfb) during a live
# run, driven with xdotool. Takes about 3 minutes.
#   apt-get install -y --no-install-recommends xvfb imagemagick xdotool x11-utils
#   cargo build --release -p rlvr-studio && packaging/screenshots.sh
# The window is 1280x800; click positions below assume that size and the default layout.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/rlvr-studio}
OUT=${OUT:-$ROOT/docs/screenshots}
TRAIN_SECONDS=${TRAIN_SECONDS:-45}
# The example plugins shown in the Plugins view (built now, before HOME changes below).
(cd "$ROOT" && cargo build --release --quiet -p rlvr-plugin-sql -p rlvr-plugin-rubric \
  -p rlvr-plugin-annealed -p rlvr-plugin-qae)
WORK=$(mktemp -d)
mkdir -p "$OUT"
export HOME="$WORK" LANG=C.UTF-8 XDG_RUNTIME_DIR="$WORK" RLVR_STUDIO_DB="$WORK/history.sqlite"
chmod 700 "$WORK"
DISP=":${SCREENSHOT_DISPLAY:-97}"
Xvfb "$DISP" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
XPID=$!
APP=
cleanup() {
  [ -n "$APP" ] && kill "$APP" 2>/dev/null || true
  kill "$XPID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export DISPLAY="$DISP"
sleep 1

echo "1/3 two short runs in the history to compare (headless CLI)"
cd "$WORK"
"$BIN" train "$ROOT/app/presets/grpo.toml" --steps 50 --out "$WORK/runs/grpo" >/dev/null
"$BIN" train "$ROOT/app/presets/rloo.toml" --steps 50 --out "$WORK/runs/rloo" >/dev/null

# The example plugins (built if needed) and a broken file in the user plugin folder, so the
# Plugins view shows loaded libraries and a load error.
export RLVR_STUDIO_PLUGINS="$WORK/plugins"
mkdir -p "$RLVR_STUDIO_PLUGINS"
for p in sql rubric annealed qae; do
  cp "$ROOT/target/release/librlvr_plugin_$p.so" "$RLVR_STUDIO_PLUGINS/"
done
echo "not a library" > "$RLVR_STUDIO_PLUGINS/libbroken.so"

echo "2/3 the app"
"$BIN" >"$WORK/app.log" 2>&1 &
APP=$!
sleep 5
WID=$(xdotool search --sync --name "RLVR Studio" | head -1)
xdotool windowfocus --sync "$WID"
shot() { sleep "${2:-1.5}"; import -window root "$OUT/$1.png"; echo "  $OUT/$1.png"; }
click() { xdotool mousemove "$1" "$2" click 1; }

shot 01-first-start 0.5
# An invalid value: the CLI's message, in the header and under the field.
xdotool mousemove 250 500
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do xdotool click 5; sleep 0.05; done
sleep 0.5
click 200 687   # group_size
sleep 0.3
xdotool key ctrl+a type 0
xdotool key Return
shot 02-form-validation
click 200 687
sleep 0.3
xdotool key ctrl+a type 8
xdotool key Return
sleep 0.5
xdotool key ctrl+Return
sleep "$TRAIN_SECONDS"
shot 03-live-training 0
click 290 14    # Inspector
shot 04-inspector
click 219 14    # Runs
sleep 1.5
click 22 151    # tick the live run
click 22 177    # tick rloo
click 22 203    # tick grpo
shot 05-runs-compare 2
click 370 14    # Plugins
shot 06-plugins
click 162 14    # Train
click 1140 14   # Light mode
sleep 0.5
click 1231 14   # Large text
shot 07-light-large-text 2

echo "3/3 closing mid-run (Ctrl+Q) stops the run cleanly"
xdotool key ctrl+q
wait "$APP" || true
APP=
"$BIN" runs list | head -4
