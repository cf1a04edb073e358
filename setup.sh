#!/usr/bin/env bash
# Set up kws-stream in ./.venv: system packages, the Python package, and the models.
#   ./setup.sh         for running it (installs libportaudio2 if missing)
#   ./setup.sh --dev   also what the tests need (PulseAudio for a virtual microphone,
#                      espeak-ng/flite for synthetic speech, systemd-analyze), editable install
# Models come from ../shared/models when that directory exists (CI, this workspace),
# otherwise from the pinned ML-Zoo URL in models/manifest.toml; both are SHA-1 checked.
set -euo pipefail
cd "$(dirname "$0")"

dev=0
[ "${1:-}" = "--dev" ] && dev=1

apt_packages=(libportaudio2 python3-venv)
[ "$dev" = 1 ] && apt_packages+=(pulseaudio pulseaudio-utils libasound2-plugins espeak-ng flite sox systemd mosquitto openssl)

missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "setup.sh: please install: ${missing[*]}" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup.sh: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
    .venv/bin/python -m pip install -q -e ".[test]"
else
    .venv/bin/python -m pip install -q .
fi

if [ -d ../shared/models ]; then
    .venv/bin/kws-stream models install all --from ../shared/models
else
    .venv/bin/kws-stream models install all
fi
