#!/usr/bin/env bash
# kws-stream on a Raspberry Pi, proven under emulation (run by hand, as root; not part of .ci/run).
#
#   scripts/check-arm.sh [arm64] [armhf]      # default: both, one after the other
#
# For each architecture: builds (once, then cached) a Debian 12 root filesystem with debootstrap
# and qemu-user-static, copies this checkout to /opt/kws-stream in it, runs the install commands
# of README.md's "Raspberry Pi" section for that OS verbatim (they are read out of README.md),
# installs the models from ../shared/models, runs `kws-stream detect` on every shared clip
# (audio/keywords and audio/negatives) with both models in command and plain mode, and diffs the
# JSON lines against this x86_64 machine's: arm64 against the project's own venv (.venv), armhf
# against an x86_64 venv with armhf's dependency set (tflite-runtime 2.14, numpy < 2, no soxr,
# so the numpy/scipy resampler), and armhf's keywords also against .venv's (the interpreters'
# scores differ in the 3rd decimal, which can move a borderline word by one 20 ms hop). 44.1
# and 48 kHz copies of three clips (made with sox) run the resampler the same way. Prints one PASS/FAIL line per architecture and
# step; exit status 1 if any step failed. Logs: $KWS_ARM_CACHE/<arch>/logs/.
#
# Cache: $KWS_ARM_CACHE (default /var/cache/kws-arm) keeps each root filesystem, and inside it
# apt's and pip's caches, so a second run only reinstalls the project; also the x86_64
# tflite-runtime venv. Delete a directory there
# to start that architecture from scratch.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${KWS_SHARED:-$(cd "$repo/.." && pwd)/shared}
cache=${KWS_ARM_CACHE:-/var/cache/kws-arm}
mirror=${KWS_ARM_MIRROR:-http://deb.debian.org/debian}
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf)
failed=0
mounts=()

say() { printf '%s\n' "$*"; }
die() { say "check-arm: $*" >&2; exit 2; }
result() {  # result ARCH STEP STATUS SECONDS [DETAIL]
    printf '%-4s %-5s %-28s (%3d s)%s\n' "$3" "$1" "$2" "$4" "${5:+ $5}"
    [ "$3" = PASS ] || failed=1
}
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null; done
}
trap cleanup EXIT

for a in "${arches[@]}"; do
    case "$a" in arm64|armhf) ;; *) die "unknown architecture '$a': use arm64 and/or armhf";; esac
done
[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it): sudo $0 $*"
[ -d "$shared/audio/keywords" ] && [ -d "$shared/models" ] || die "no shared clips/models at $shared: set KWS_SHARED"
x86=$repo/.venv/bin/kws-stream
[ -x "$x86" ] || die "$x86 is missing: run ./setup.sh first (the x86_64 reference)"

# Host tools and binfmt_misc (qemu-user-static registers with the F flag: no qemu in the chroot)
need=()
for p in debootstrap qemu-user-static binfmt-support; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
        || die "could not install ${need[*]}"
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1
update-binfmts --enable qemu-arm >/dev/null 2>&1

# The clips, laid out identically on the host and in each chroot, so `source` fields match
mapfile -t clips < <(cd "$shared" && ls audio/keywords/*.wav audio/negatives/*.wav)
[ ${#clips[@]} -gt 0 ] || die "no clips under $shared/audio/keywords and negatives"
work=$(mktemp -d /tmp/kws-check-arm.XXXXXX)
trap 'cleanup; rm -rf "$work"' EXIT
stage() {  # stage DIR: the clips, the models, the plain-mode config
    mkdir -p "$1/audio" "$1/out"
    cp -r "$shared/audio/keywords" "$shared/audio/negatives" "$1/audio/"
    cp -r "$work/resampled" "$1/audio/"
    cp -r "$shared/models" "$1/models"
    printf '[command]\nenabled = false\n' > "$1/plain.toml"
}
runs=("micronet-l command" "micronet-l plain" "micronet-m command" "micronet-m plain")
run_args() {  # run_args MODEL MODE: the detect command line for one run
    printf 'detect --model %s' "$1"
    [ "$2" = plain ] && printf ' --config plain.toml'
    return 0
}
detect_all() {  # detect_all KWS_STREAM: every run into out/<model>-<mode>.json (cwd: a staged dir)
    local model mode
    for run in "${runs[@]}"; do
        read -r model mode <<< "$run"
        # shellcheck disable=SC2046
        "$1" $(run_args "$model" "$mode") "${clips[@]}" > "out/$model-$mode.json" || return 1
    done
    "$1" detect "${resampled[@]}" > out/resampled.json
}
same_keywords() {  # same_keywords REF GOT: the same keywords in each file; how far times and scores differ
    python3 - "$1" "$2" <<'PY'
import json, sys
ref, got = ([json.loads(line) for line in open(path)] for path in sys.argv[1:])
if [(d["source"], d["keyword"]) for d in ref] != [(d["source"], d["keyword"]) for d in got]:
    print("keywords differ:", [(d["source"], d["keyword"]) for d in got]); sys.exit(1)
moved = sum(a["start"] != b["start"] for a, b in zip(ref, got))
print(f"{len(got)} keywords identical; {moved} start times moved by at most "
      f"{max([abs(a['start'] - b['start']) for a, b in zip(ref, got)] + [0]):.2f} s; "
      f"scores within {max([abs(a['score'] - b['score']) for a, b in zip(ref, got)] + [0]):.4f}")
PY
}

# 44.1 and 48 kHz copies of three clips: the resampler runs (soxr, or the fallback on armhf)
mkdir -p "$work/resampled"
resampled=()
for name in right_left_up yes_no_go_stop down; do
    for rate in 44100 48000; do
        sox -V1 -D "$shared/audio/keywords/$name.wav" -r "$rate" "$work/resampled/${name}_$rate.wav" \
            || die "sox could not make a $rate Hz copy (apt-get install sox)"
        resampled+=("audio/resampled/${name}_$rate.wav")
    done
done

reference() {  # reference NAME KWS_STREAM: the x86_64 outputs in $work/NAME/out
    stage "$work/$1"
    (cd "$work/$1" && export XDG_DATA_HOME="$work/$1/data" && "$2" models install all --from models >/dev/null \
        && detect_all "$2" 2>"$work/$1.log") || die "the x86_64 reference run ($1) failed: $(tail -n 3 "$work/$1.log")"
    say "x86_64 reference ($1: $("$(dirname "$2")/python" -m pip list 2>/dev/null \
        | grep -E -i '^(ai-edge-litert|tflite-runtime|numpy) ' | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')):" \
        "$(cat "$work/$1"/out/micronet-*.json | wc -l) detections over ${#runs[@]} runs of ${#clips[@]} clips"
}
reference x86 "$x86"
if [[ " ${arches[*]} " = *" armhf "* ]]; then  # armhf's dependency set on x86_64: tflite-runtime, numpy<2, no soxr
    tfl=$cache/x86_64-tflite-runtime
    if [ ! -e "$tfl/.deps-ok" ]; then
        rm -rf "$tfl" && python3 -m venv "$tfl" && "$tfl/bin/pip" install -q "numpy>=1.24,<2" "scipy>=1.10" \
            sounddevice tqdm prometheus-client "wyoming>=1.10,<2" "paho-mqtt>=2,<3" "tflite-runtime==2.14.0" \
            >"$work/tfl.log" 2>&1 && touch "$tfl/.deps-ok" || die "could not build $tfl: $(tail -n 3 "$work/tfl.log")"
    fi
    "$tfl/bin/pip" install -q --no-deps --force-reinstall "$repo" >"$work/tfl.log" 2>&1 \
        || die "could not install kws-stream into $tfl: $(tail -n 3 "$work/tfl.log")"
    reference x86-tflite-runtime "$tfl/bin/kws-stream"
fi

# README.md's install block for one OS: the ```sh block after <!-- check-arm: ARCH -->
readme_block() {
    awk -v tag="<!-- check-arm: $1 -->" '
        $0 == tag { found = 1; next }
        found && /^```sh/ { inside = 1; next }
        inside && /^```/ { exit }
        inside { print }' "$repo/README.md"
}

in_root() {  # in_root ROOT LOG COMMAND: a login-like root shell in the chroot
    local root=$1 log=$2; shift 2
    chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/ssl/certs/host-ca.crt \
        PIP_DEFAULT_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} \
        /bin/bash -euo pipefail -c "$*" >> "$log" 2>&1
}

check_arch() {
    local arch=$1 dir="$cache/$1" root="$cache/$1/rootfs" logs="$cache/$1/logs" t block
    mkdir -p "$logs" && rm -f "$logs"/*.log

    t=$SECONDS
    if [ ! -e "$root/.kws-rootfs-ok" ]; then
        rm -rf "$dir/rootfs.tmp"
        if debootstrap --arch="$arch" --variant=minbase --include=ca-certificates bookworm \
                "$dir/rootfs.tmp" "$mirror" > "$logs/rootfs.log" 2>&1; then
            rm -rf "$root" && mv "$dir/rootfs.tmp" "$root" && touch "$root/.kws-rootfs-ok"
        fi
    fi
    if [ -e "$root/.kws-rootfs-ok" ] && [ "$(chroot "$root" dpkg --print-architecture 2>/dev/null)" = "$arch" ]; then
        result "$arch" "rootfs (Debian 12, $(chroot "$root" uname -m))" PASS $((SECONDS - t))
    else
        result "$arch" "rootfs" FAIL $((SECONDS - t)) "see $logs/rootfs.log"; return
    fi

    for m in proc sys dev dev/pts; do
        case $m in
            proc) mount -t proc proc "$root/proc" ;;
            sys) mount -t sysfs sysfs "$root/sys" ;;
            *) mount --bind "/$m" "$root/$m" ;;
        esac && mounts+=("$root/$m")
    done
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca.crt"  # pip: the host's CAs
    printf '#!/bin/sh\nexec "$@"\n' > "$root/usr/local/bin/sudo" && chmod 755 "$root/usr/local/bin/sudo"

    # The project as a user would have it after `git clone`, fresh venv every run
    t=$SECONDS
    rm -rf "$root/opt/kws-stream" "$root/tmp/kws-check" && mkdir -p "$root/opt/kws-stream"
    git -C "$repo" ls-files -z --cached --others --exclude-standard \
        | (cd "$repo" && tar --null -T - -cf - 2>/dev/null) | tar -xf - -C "$root/opt/kws-stream"
    block=$(readme_block "$arch")
    if [ -z "$block" ]; then
        result "$arch" "install (README)" FAIL 0 "no <!-- check-arm: $arch --> sh block in README.md"; return
    fi
    printf '%s\n' "$block" > "$logs/install-commands.sh"
    if in_root "$root" "$logs/install.log" "$block" \
            && in_root "$root" "$logs/install.log" "/opt/kws-stream/venv/bin/python -m pip list"; then
        result "$arch" "install (README)" PASS $((SECONDS - t)) \
            "$(grep -E -i '^(ai-edge-litert|tflite-runtime|numpy|scipy|soxr) ' "$logs/install.log" | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')"
    else
        result "$arch" "install (README)" FAIL $((SECONDS - t)) "see $logs/install.log"; return
    fi

    t=$SECONDS
    stage "$root/tmp/kws-check"
    if in_root "$root" "$logs/models.log" "/opt/kws-stream/venv/bin/kws-stream models install all --from /tmp/kws-check/models"; then
        result "$arch" "models" PASS $((SECONDS - t))
    else
        result "$arch" "models" FAIL $((SECONDS - t)) "see $logs/models.log"; return
    fi

    local ref=x86 name label got n
    [ "$arch" = armhf ] && ref=x86-tflite-runtime
    for run in "${runs[@]}" resampled; do
        read -r model mode <<< "$run"
        t=$SECONDS
        name=$model${mode:+-$mode}
        label="detect $model $mode"
        local args
        if [ "$run" = resampled ]; then
            args="detect ${resampled[*]}"; label="detect 44.1/48 kHz copies"
        else
            args="$(run_args "$model" "$mode") ${clips[*]}"
        fi
        if ! in_root "$root" "$logs/detect-$name.log" \
                "cd /tmp/kws-check && /opt/kws-stream/venv/bin/kws-stream $args > out/$name.json"; then
            result "$arch" "$label" FAIL $((SECONDS - t)) "exit status != 0: $logs/detect-$name.log"
            continue
        fi
        got="$root/tmp/kws-check/out/$name.json"
        n=$(wc -l < "$got")
        if diff -u "$work/$ref/out/$name.json" "$got" > "$logs/diff-$name.txt"; then
            result "$arch" "$label" PASS $((SECONDS - t)) "identical to x86_64 ($ref, $n detections)"
        else
            result "$arch" "$label" FAIL $((SECONDS - t)) "differs from x86_64 ($ref): $logs/diff-$name.txt"
        fi
        if [ "$ref" != x86 ]; then  # and against the ai-edge-litert + soxr install
            if n=$(same_keywords "$work/x86/out/$name.json" "$got"); then
                result "$arch" "  same keywords as .venv" PASS 0 "$n"
            else
                result "$arch" "  same keywords as .venv" FAIL 0 "$n"
            fi
        fi
    done
    cleanup; mounts=()
}

start=$SECONDS
for arch in "${arches[@]}"; do
    check_arch "$arch"
done
say "check-arm: $([ $failed = 0 ] && echo PASS || echo FAIL) in $((SECONDS - start)) s (${arches[*]})"
exit $failed
