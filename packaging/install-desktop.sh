#!/bin/sh
# Installs the desktop entry and icons for the current user (~/.local), so `rlvr-studio`
# appears in the application menu. The binary must be on PATH (e.g. ~/.local/bin).
#   packaging/install-desktop.sh [PREFIX]   (default PREFIX: ~/.local)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${1:-$HOME/.local}
install -Dm644 "$ROOT/packaging/rlvr-studio.desktop" "$PREFIX/share/applications/rlvr-studio.desktop"
install -Dm644 "$ROOT/icons/rlvr-studio.svg" "$PREFIX/share/icons/hicolor/scalable/apps/rlvr-studio.svg"
for size in 48 64 128 256; do
  install -Dm644 "$ROOT/icons/rlvr-studio-$size.png" "$PREFIX/share/icons/hicolor/${size}x${size}/apps/rlvr-studio.png"
done
command -v desktop-file-validate >/dev/null && desktop-file-validate "$PREFIX/share/applications/rlvr-studio.desktop" || true
echo "installed to $PREFIX/share (applications, icons/hicolor)"
