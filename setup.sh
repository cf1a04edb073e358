#!/usr/bin/env bash
# Set up kws-stream in ./.venv: system packages, the Python package, and the models.
set -euo pipefail
cd "$(dirname "$0")"

APT_LOCK_TIMEOUT=300  # seconds to wait for the dpkg lock (a Pi's unattended-upgrades holds it at boot)

usage() {
    cat <<USAGE
usage: ./setup.sh [--dev] [--help]

Sets up kws-stream in ./.venv: missing system packages (apt-get, with sudo unless root;
waits up to ${APT_LOCK_TIMEOUT} s for the dpkg lock), the Python package, and both models
(from ../shared/models when that directory exists, else the pinned ML-Zoo URLs; SHA-1 checked).

  --dev    also what the tests need (PulseAudio for a virtual microphone, espeak-ng/flite
           for synthetic speech, sox, mosquitto, systemd-analyze, iproute2 for
           the zeroconf test's network namespace) and an editable install
  --help   print this and do nothing

Environment: PYTHON (default python3) creates the virtualenv.
USAGE
}

dev=0
for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown option: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

apt_packages=(libportaudio2 python3-venv)
[ "$dev" = 1 ] && apt_packages+=(pulseaudio pulseaudio-utils libasound2-plugins espeak-ng flite sox systemd mosquitto openssl iproute2)

# `install` waits for the dpkg lock itself (DPkg::Lock::Timeout); `update` fails at once on
# the lists lock whatever the option says (apt 2.6), so it is retried until the same timeout.
apt_update() {
    local waited=0 out
    until out=$($sudo "${apt[@]}" update -qq 2>&1); do
        if ! grep -q "Could not get lock" <<<"$out" || [ "$waited" -ge "$APT_LOCK_TIMEOUT" ]; then
            printf '%s\n' "$out" >&2
            return 1
        fi
        [ "$waited" = 0 ] && echo "setup.sh: another apt/dpkg holds the lock: waiting up to ${APT_LOCK_TIMEOUT} s" >&2
        sleep 2
        waited=$((waited + 2))
    done
}

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
    apt=(apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT")
    apt_update
    DEBIAN_FRONTEND=noninteractive $sudo "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
    .venv/bin/python -m pip install -q -e ".[test,bench]"
else
    .venv/bin/python -m pip install -q .
fi

if [ -d ../shared/models ]; then
    .venv/bin/kws-stream models install all --from ../shared/models
else
    .venv/bin/kws-stream models install all
fi
