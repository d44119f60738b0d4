#!/usr/bin/env bash
# System packages streamrt's tests need beyond Python: the ffmpeg CLI (an independent oracle for
# decoding) and headless Chromium with its driver (the web demo and report tests). The runtime itself
# needs neither. Debian/Ubuntu; skips what is already there.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "system packages ok: ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3), $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
