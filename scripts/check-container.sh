#!/usr/bin/env bash
# kws-stream's container image, built and run for real (by hand, as root; not part of .ci/run).
#
#   scripts/check-container.sh [--arch amd64|arm64] [--mirror URL]
#
# --arch: the image's architecture (default: this machine's). Another one runs under
# qemu-user-static (installed and registered with binfmt_misc here, as check-arm.sh does).
#
# For machines that reach Debian's archive and PyPI but no container registry: builds a Debian
# bookworm base image with debootstrap (minbase) and imports it into podman, builds the
# top-level Dockerfile on it (dependencies from PyPI, the models from ../shared/models given as
# the MODELS build argument through a temporary build context), then checks from the host:
#   describe    the container answers Wyoming `describe` on its published port (start-up time)
#   health      the image's health check passes
#   wyoming     right_left_up.wav sent over Wyoming gives right, left, up
#   detect      `kws-stream detect` inside the container gives right, left, up
#   non-root    the service (PID 1) runs as the image's user, not root
#   live        `run` (the live daemon) records from a PulseAudio socket mounted into the
#               container (a private server whose microphone plays right_left_up.wav: the
#               tests' VirtualMic) and prints right, left, up
#   sigterm     `podman stop` (SIGTERM) ends it within 10 s with exit status 0
#   restart     a config edit in /data holds across a restart and a new container on the same
#               volume, and the models stay the same files
#   zeroconf    `serve wyoming --zeroconf` in a network namespace of its own is seen by a
#               zeroconf browser there with port 10400, and is gone once the container stops
#   addon       addon/Dockerfile on that image, started with a /data/options.json as the
#               Supervisor writes it: the options become the config (model, keywords, log level)
# One PASS/FAIL line per step (zeroconf is SKIP under emulation, see below); exit status 1 if
# any failed. Logs: $KWS_CONTAINER_CACHE/logs/ARCH/.
#
# The mirror for debootstrap is read from apt's configuration (the one apt uses for bookworm),
# or given with --mirror. Podman runs with runc (Debian 12's crun refuses hosts whose cgroups
# are mixed v1/v2) and with nofile/nproc limits below the host's (without CAP_SYS_RESOURCE the
# OCI runtime cannot set podman's defaults). The host's CA bundle is handed to pip as a build
# secret, for build networks behind a TLS proxy; it is not stored in the image.
#
# Cache: $KWS_CONTAINER_CACHE (default /var/cache/kws-container) keeps the base root
# filesystem; podman keeps the images (localhost/kws-debian:bookworm-ARCH, localhost/kws-stream:check-ARCH).
# Needs ./setup.sh --dev first: the host side (Wyoming client, zeroconf browser) uses .venv.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${KWS_SHARED:-$(cd "$repo/.." && pwd)/shared}
cache=${KWS_CONTAINER_CACHE:-/var/cache/kws-container}
mirror=""
arch=$(dpkg --print-architecture)
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch=${2:?--arch needs amd64 or arm64}; shift 2;;
        --mirror) mirror=${2:?--mirror needs a URL}; shift 2;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
        *) printf 'check-container: unknown argument %s (see --help)\n' "$1" >&2; exit 2;;
    esac
done
case "$arch" in
    amd64) hass_arch=amd64;;
    arm64) hass_arch=aarch64;;
    *) printf 'check-container: --arch %s: use amd64 or arm64\n' "$arch" >&2; exit 2;;
esac
base=localhost/kws-debian:bookworm-$arch
image=localhost/kws-stream:check-$arch
name=kws-check-$$
volume=kws-check-data-$$
netns=kws-check-$$
failed=0
skipped=0
started=$(date +%s)

die() { printf 'check-container: %s\n' "$*" >&2; exit 2; }
result() {  # result STEP STATUS SECONDS [DETAIL]
    printf '%-4s %-5s %-9s (%3d s)%s\n' "$2" "$arch" "$1" "$3" "${4:+ $4}"
    [ "$2" = SKIP ] && skipped=$((skipped + 1))
    [ "$2" = PASS ] || [ "$2" = SKIP ] || failed=1
}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, podman and network namespaces need it): sudo $0"
[ -f "$shared/audio/keywords/right_left_up.wav" ] && [ -d "$shared/models" ] \
    || die "no shared clips/models at $shared: set KWS_SHARED"
py=$repo/.venv/bin/python
[ -x "$py" ] && "$py" -c "import wyoming, zeroconf" 2>/dev/null || die "$py with wyoming and zeroconf is missing: run ./setup.sh --dev"

logs=$cache/logs/$arch
mkdir -p "$logs" && : >"$logs/run.log"
need=()
for p in podman runc debootstrap uidmap iproute2 pulseaudio; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    for p in qemu-user-static binfmt-support; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
    done
fi
if [ ${#need[@]} -gt 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >"$logs/apt.log" 2>&1 \
        || die "could not install ${need[*]}: $logs/apt.log"
fi
if [ "$arch" != "$(dpkg --print-architecture)" ]; then  # F flag: no qemu needed inside the images
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1
fi
if [ -z "$mirror" ]; then
    mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null | awk '$2 == "bookworm" {print $1; exit}')
    [ -n "$mirror" ] || die "apt has no bookworm archive configured: give one with --mirror URL"
fi

work=$(mktemp -d /tmp/kws-check-container.XXXXXX)
podman=(podman --runtime runc)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096 --health-interval=disable)
cleanup() {
    "${podman[@]}" rm -f -t 0 "$name" "$name-zc" "$name-addon" >/dev/null 2>&1
    "${podman[@]}" volume rm -f "$volume" >/dev/null 2>&1
    ip netns delete "$netns" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------- base image
t=$(now)
how="kept from an earlier run"
if ! "${podman[@]}" image exists "$base"; then
    how="imported from $cache/rootfs-$arch.tar (debootstrap, kept from an earlier run)"
    if [ ! -f "$cache/rootfs-$arch.tar" ]; then
        how="debootstrap from $mirror"
        rm -rf "$cache/rootfs-$arch.tmp"
        debootstrap --arch="$arch" --variant=minbase bookworm "$cache/rootfs-$arch.tmp" "$mirror" >"$logs/debootstrap-$arch.log" 2>&1 \
            || { result base FAIL "$(since "$t" | cut -d. -f1)" "debootstrap failed: $logs/debootstrap-$arch.log"; exit 1; }
        # as bookworm-slim: no package lists, docs or man pages
        rm -rf "$cache"/rootfs-$arch.tmp/var/lib/apt/lists/* "$cache"/rootfs-$arch.tmp/var/cache/apt/*.bin \
               "$cache"/rootfs-$arch.tmp/usr/share/doc/* "$cache"/rootfs-$arch.tmp/usr/share/man/*
        tar -C "$cache/rootfs-$arch.tmp" -cf "$cache/rootfs-$arch.tar" . && rm -rf "$cache/rootfs-$arch.tmp"
    fi
    "${podman[@]}" import --arch "$arch" --change 'CMD ["bash"]' "$cache/rootfs-$arch.tar" "$base" >"$logs/import.log" 2>&1 \
        || { result base FAIL "$(since "$t" | cut -d. -f1)" "import failed: $logs/import.log"; exit 1; }
fi
result base PASS "$(since "$t" | cut -d. -f1)" "$base: $how"

# ---------------------------------------------------------------- build
t=$(now)
context=$work/context
mkdir -p "$context"
(cd "$repo" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$context"
cp -r "$shared/models" "$context/.models" && chmod -R u+w "$context/.models"
secret=()
[ -s /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret id=ca,src=/etc/ssl/certs/ca-certificates.crt)
if "${podman[@]}" build --format docker --arch "$arch" "${secret[@]}" --build-arg BASE="$base" --build-arg MODELS=.models \
        -t "$image" "$context" >"$logs/build.log" 2>&1; then
    size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
    result build PASS "$(since "$t" | cut -d. -f1)" "$image, $((size / 1000000)) MB"
else
    result build FAIL "$(since "$t" | cut -d. -f1)" "$logs/build.log"
    exit 1
fi

# ---------------------------------------------------------------- host-side helpers
cat >"$work/client.py" <<'EOF'
"""describe PORT [TIMEOUT] | clip PORT WAV: a Wyoming client on 127.0.0.1."""
import asyncio, sys, time, wave
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.wake import Detection

async def describe(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:  # the container may still be loading: connection refused or reset until then
        try:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Describe().event())
                event = await asyncio.wait_for(client.read_event(), 10)
                if event is not None and Info.is_type(event.type):
                    info = Info.from_event(event)
                    print(",".join(sorted(m.name for w in info.wake for m in w.models)))
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"no Wyoming info on port {port} within {timeout} s")
        await asyncio.sleep(0.05)

async def clip(port: int, path: str) -> None:
    with wave.open(path) as w:
        rate, width, channels, pcm = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.readframes(w.getnframes())
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
        step = 1024 * width * channels
        for i in range(0, len(pcm), step):
            await client.write_event(AudioChunk(rate=rate, width=width, channels=channels, audio=pcm[i:i + step]).event())
        await client.write_event(AudioStop().event())
        await client.write_event(Ping().event())  # answered after everything before it
        names = []
        while True:
            event = await asyncio.wait_for(client.read_event(), 60)
            if event is None or Pong.is_type(event.type):
                break
            if Detection.is_type(event.type):
                names.append(Detection.from_event(event).name)
    print(",".join(names))

if sys.argv[1] == "describe":
    asyncio.run(describe(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 120))
else:
    asyncio.run(clip(int(sys.argv[2]), sys.argv[3]))
EOF
cat >"$work/browse.py" <<'EOF'
"""browse.py PORT: waits (60 s) for a _wyoming._tcp service on PORT and prints it; then, after
a line on stdin (the service was stopped), waits (10 s) for its removal: prints `removed` or
`still there`."""
import json, sys, threading
from zeroconf import IPVersion, ServiceBrowser, ServiceStateChange, Zeroconf

port, found, gone = int(sys.argv[1]), {}, threading.Event()
added = threading.Event()

def changed(zeroconf, service_type, name, state_change):
    if state_change is ServiceStateChange.Removed:
        if name == found.get("name"):
            gone.set()
        return
    info = zeroconf.get_service_info(service_type, name, timeout=5000)
    if info is not None and info.port == port and not added.is_set():
        found.update(name=name, port=info.port, addresses=sorted(info.parsed_addresses()))
        added.set()

zc = Zeroconf(ip_version=IPVersion.V4Only)
browser = ServiceBrowser(zc, "_wyoming._tcp.local.", handlers=[changed])
print(json.dumps(found) if added.wait(60) else "not seen", flush=True)
if added.is_set():
    sys.stdin.readline()
    print("removed" if gone.wait(10) else "still there", flush=True)
browser.cancel()
zc.close()
EOF
cat >"$work/live.py" <<'EOF'
"""live.py IMAGE WAV PODMAN RUN_OPTIONS (each one shell-quoted string): the live daemon in the container, recording from a PulseAudio
socket (a private server whose microphone plays WAV); prints the keywords it reported."""
import json, queue, shlex, subprocess, sys, tempfile, threading, time
from pathlib import Path
import numpy as np
import scipy.io.wavfile
from testsupport.vmic import VirtualMic

image, wav, podman, options = sys.argv[1], sys.argv[2], shlex.split(sys.argv[3]), shlex.split(sys.argv[4])
rate, samples = scipy.io.wavfile.read(wav)
with tempfile.TemporaryDirectory(prefix="kws-live-") as tmp, VirtualMic(Path(tmp), rate=rate, channels=1) as mic:
    mic.socket_path.chmod(0o777)
    name = f"kws-live-{Path(tmp).name}"
    proc = subprocess.Popen([*podman, "run", "--rm", "--name", name, *options, "-v", f"{mic.socket_path}:/run/pulse/native",
                             "-e", "PULSE_SERVER=unix:/run/pulse/native", image, "run", "--device", "pulse"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(("err", l)) for l in proc.stderr], daemon=True).start()
    threading.Thread(target=lambda: [lines.put(("out", l)) for l in proc.stdout], daemon=True).start()
    keywords, log, deadline, played = [], [], time.monotonic() + 120, False
    while time.monotonic() < deadline and len(keywords) < 3:
        try:
            kind, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if kind == "err":
            log.append(line)
            if "event=capture_started" in line and not played:
                mic.play(samples)
                played = True
        else:
            keywords.append(json.loads(line)["keyword"])
    subprocess.run([*podman, "stop", "-t", "10", name], capture_output=True)
    code = proc.wait(timeout=30)
    print(",".join(keywords) if keywords else "nothing: " + " | ".join(l.strip() for l in log[-3:]))
    sys.exit(0 if code == 0 else 1)
EOF
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
clipdir=$shared/audio/keywords
run_service() {  # run_service: the container on $volume, Wyoming published on 127.0.0.1:$port
    "${podman[@]}" run -d --name "$name" "${limits[@]}" -p "127.0.0.1:$port:10400" -v "$volume:/data" \
        -v "$clipdir:/audio:ro" "$image" >>"$logs/run.log" 2>&1
}

# ---------------------------------------------------------------- describe (start-up time)
t=$(now)
"${podman[@]}" volume rm -f "$volume" >/dev/null 2>&1
if run_service && models=$("$py" "$work/client.py" describe "$port" 120 2>>"$logs/run.log"); then
    startup=$(since "$t")
    result describe PASS "${startup%.*}" "info in ${startup} s from podman run; wake models $models"
else
    result describe FAIL "$(since "$t" | cut -d. -f1)" "$logs/run.log; container log: $("${podman[@]}" logs "$name" 2>&1 | tail -3)"
    exit 1
fi

# ---------------------------------------------------------------- health check
t=$(now)
if out=$("${podman[@]}" healthcheck run "$name" 2>&1); then
    result health PASS "$(since "$t" | cut -d. -f1)" "podman healthcheck run: ${out:-healthy}"
else
    result health FAIL "$(since "$t" | cut -d. -f1)" "$out"
fi

# ---------------------------------------------------------------- a shared clip over Wyoming
t=$(now)
got=$("$py" "$work/client.py" clip "$port" "$clipdir/right_left_up.wav" 2>&1)
[ "$got" = "right,left,up" ] && s=PASS || s=FAIL
result wyoming $s "$(since "$t" | cut -d. -f1)" "right_left_up.wav over Wyoming: $got"

# ---------------------------------------------------------------- detect inside the container
t=$(now)
got=$("${podman[@]}" exec "$name" kws-stream detect /audio/right_left_up.wav 2>"$logs/detect.log" \
      | "$py" -c 'import json, sys; print(",".join(json.loads(l)["keyword"] for l in sys.stdin))')
[ "$got" = "right,left,up" ] && s=PASS || s=FAIL
result detect $s "$(since "$t" | cut -d. -f1)" "kws-stream detect in the container: $got"

# ---------------------------------------------------------------- non-root
t=$(now)
uid=$("${podman[@]}" exec "$name" awk '/^Uid:/ {print $2}' /proc/1/status)
user=$("${podman[@]}" exec "$name" sh -c 'id -un; tr "\0" " " < /proc/1/cmdline')
[ -n "$uid" ] && [ "$uid" != 0 ] && s=PASS || s=FAIL
result non-root $s "$(since "$t" | cut -d. -f1)" "PID 1 uid $uid ($(echo "$user" | tr '\n' ' '))"

# ---------------------------------------------------------------- the live daemon
t=$(now)
got=$(cd "$repo" && PYTHONPATH=$repo "$py" "$work/live.py" "$image" "$clipdir/right_left_up.wav" \
      "${podman[*]}" "${limits[*]}" 2>"$logs/live.log")
[ "$got" = "right,left,up" ] && s=PASS || s=FAIL
result live $s "$(since "$t" | cut -d. -f1)" "kws-stream run from a PulseAudio socket playing right_left_up.wav: $got"

# ---------------------------------------------------------------- SIGTERM
stop_within() {  # stop_within NAME: podman stop (SIGTERM, SIGKILL after 10 s); prints "SECONDS EXIT"
    local t0
    t0=$(now)
    "${podman[@]}" stop -t 10 "$1" >/dev/null 2>&1
    printf '%s %s\n' "$(since "$t0")" "$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$1")"
}
t=$(now)
sums_before=$("${podman[@]}" exec "$name" sh -c 'cd /data/models && stat -c "%n %i %Y" *.tflite && sha1sum *.tflite')
"${podman[@]}" exec "$name" sh -c 'printf "[detection]\nkeywords = [\"right\", \"left\", \"up\"]\n" \
    >> /data/config/kws-stream/kws-stream.toml'
read -r took code < <(stop_within "$name")
if [ "$code" = 0 ] && python3 -c "import sys; sys.exit(float(sys.argv[1]) >= 10)" "$took"; then
    result sigterm PASS "${took%.*}" "stopped in $took s, exit status $code"
else
    result sigterm FAIL "${took%.*}" "stopped in $took s, exit status $code (137 = killed after 10 s)"
fi

# ---------------------------------------------------------------- restart and a new container
t=$(now)
"${podman[@]}" start "$name" >/dev/null 2>&1
after_restart=$("$py" "$work/client.py" describe "$port" 120 2>&1)
read -r _ _ < <(stop_within "$name")
"${podman[@]}" rm "$name" >/dev/null 2>&1
run_service
after_recreate=$("$py" "$work/client.py" describe "$port" 120 2>&1)
sums_after=$("${podman[@]}" exec "$name" sh -c 'cd /data/models && stat -c "%n %i %Y" *.tflite && sha1sum *.tflite')
got=$("$py" "$work/client.py" clip "$port" "$clipdir/right_left_up.wav" 2>&1)
if [ "$after_restart" = "left,right,up" ] && [ "$after_recreate" = "left,right,up" ] \
        && [ "$sums_before" = "$sums_after" ] && [ "$got" = "right,left,up" ]; then
    result restart PASS "$(since "$t" | cut -d. -f1)" "config edit kept (wake models $after_recreate after restart and recreate), models unchanged"
else
    result restart FAIL "$(since "$t" | cut -d. -f1)" "after restart: $after_restart; recreated: $after_recreate; clip: $got; models same: $([ "$sums_before" = "$sums_after" ] && echo yes || echo no)"
fi
read -r _ _ < <(stop_within "$name")

# ---------------------------------------------------------------- zeroconf in a network namespace
t=$(now)
net=10.254.$(($$ % 250))
ip netns add "$netns" && ip -n "$netns" link set lo up \
    && ip -n "$netns" link add zc0 type veth peer name zc1 \
    && ip -n "$netns" addr add "$net.1/24" dev zc0 && ip -n "$netns" addr add "$net.2/24" dev zc1 \
    && ip -n "$netns" link set zc0 up && ip -n "$netns" link set zc1 up
# qemu-user (7.2, Debian 12) has no setsockopt(IP_MULTICAST_IF), which mDNS needs: under emulation
# the step is skipped when, and only when, the container's own probe of it says so
probe='import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))'
if [ "$arch" != "$(dpkg --print-architecture)" ] \
        && ! why=$("${podman[@]}" run --rm "${limits[@]}" --entrypoint python "$image" -c "$probe" 2>&1 | tail -1); then
    result zeroconf SKIP "$(since "$t" | cut -d. -f1)" "emulated $arch cannot do mDNS: setsockopt(IP_MULTICAST_IF): ${why##*: } (qemu-user's limit, not $arch's)"
else
coproc browser { ip netns exec "$netns" "$py" "$work/browse.py" 10400 2>"$logs/browse.log"; }
"${podman[@]}" run -d --name "$name-zc" "${limits[@]}" --network "ns:/run/netns/$netns" -v "$volume:/data" \
    "$image" serve wyoming --zeroconf kws-check >>"$logs/run.log" 2>&1
seen=""; read -r -t 90 -u "${browser[0]}" seen
if [ "${seen:0:1}" = "{" ]; then
    read -r took code < <(stop_within "$name-zc")
    echo stopped >&"${browser[1]}"
    gone=""; read -r -t 30 -u "${browser[0]}" gone
    if [ "$gone" = removed ]; then
        result zeroconf PASS "$(since "$t" | cut -d. -f1)" "seen: $seen; gone within 10 s of the stop"
    else
        result zeroconf FAIL "$(since "$t" | cut -d. -f1)" "seen: $seen, but after the stop: ${gone:-nothing}"
    fi
else
    result zeroconf FAIL "$(since "$t" | cut -d. -f1)" "not seen: ${seen:-nothing}; $("${podman[@]}" logs "$name-zc" 2>&1 | tail -3)"
fi
[ -n "${browser_PID:-}" ] && kill "$browser_PID" 2>/dev/null
wait 2>/dev/null
fi

# ---------------------------------------------------------------- the add-on's image and options
t=$(now)
addon=localhost/kws-stream-addon:check-$arch
"${podman[@]}" volume rm -f "$volume-addon" >/dev/null 2>&1
if "${podman[@]}" build --format docker --build-arg BUILD_FROM="$image" --arch "$arch" --build-arg BUILD_ARCH="$hass_arch" \
        --build-arg BUILD_VERSION=check -t "$addon" "$repo/addon" >"$logs/addon-build.log" 2>&1 \
   && printf '%s\n' '{"model": "micronet-m", "mode": "plain", "threshold": 0.6, "keywords": ["up", "left"], "log_level": "debug"}' \
      | "${podman[@]}" run --rm -i "${limits[@]}" -v "$volume-addon:/data" --entrypoint sh "$addon" -c 'cat > /data/options.json' 2>>"$logs/run.log" \
   && "${podman[@]}" run -d --name "$name-addon" "${limits[@]}" -p "127.0.0.1:$port:10400" -v "$volume-addon:/data" \
        "$addon" >>"$logs/run.log" 2>&1; then
    models=$("$py" "$work/client.py" describe "$port" 120 2>&1)
    config=$("${podman[@]}" exec "$name-addon" cat /data/config/kws-stream/kws-stream.toml | grep -v '^#' | tr '\n' ' ')
    log=$("${podman[@]}" logs "$name-addon" 2>&1)
    if [ "$models" = "left,up" ] && grep -q "model=micronet-m" <<<"$log" \
            && grep -q 'enabled = false' <<<"$config" && grep -q 'log_level = "debug"' <<<"$config"; then
        result addon PASS "$(since "$t" | cut -d. -f1)" "options.json -> $config-> wake models $models, micronet-m"
    else
        result addon FAIL "$(since "$t" | cut -d. -f1)" "wake models $models; config $config; $(tail -3 <<<"$log")"
    fi
else
    result addon FAIL "$(since "$t" | cut -d. -f1)" "$logs/addon-build.log, $logs/run.log"
fi
"${podman[@]}" rm -f -t 10 "$name-addon" >/dev/null 2>&1
"${podman[@]}" volume rm -f "$volume-addon" >/dev/null 2>&1

printf '%s%s in %d s\n' "$([ "$failed" = 0 ] && echo "all PASS" || echo "some FAIL")" \
    "$([ "$skipped" = 0 ] || echo " ($skipped SKIP)")" $(($(date +%s) - started))
exit "$failed"
