#!/bin/sh
# Renders the app icon PNGs from the hand-written SVG (needs rsvg-convert: apt-get install librsvg2-bin).
set -eu
cd "$(dirname "$0")"
for size in 256 128 64 48; do
  rsvg-convert -w "$size" -h "$size" rlvr-studio.svg -o "rlvr-studio-${size}.png"
done
echo "wrote rlvr-studio-{256,128,64,48}.png"
