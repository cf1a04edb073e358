#!/bin/sh
# The container's entry: seeds /data on first start (the models installed in the image,
# verified at build time; a config that serves Wyoming on all interfaces), then runs
# `kws-stream ARGS` as PID 1, so SIGTERM from `docker stop` reaches it directly.
set -eu
mkdir -p /data/models /data/config/kws-stream
for f in /opt/kws-stream/models/*.tflite; do
    if [ -e "$f" ] && [ ! -e "/data/models/${f##*/}" ]; then
        cp "$f" "/data/models/${f##*/}.part" && mv "/data/models/${f##*/}.part" "/data/models/${f##*/}"
    fi
done
config=/data/config/kws-stream/kws-stream.toml
if [ -e /data/options.json ]; then  # a Home Assistant add-on: its options are the config
    python /opt/kws-stream/addon.py config /data/options.json "$config"
    python /opt/kws-stream/addon.py discover &
elif [ ! -e "$config" ]; then
    cat > "$config.part" <<'TOML'
# kws-stream in a container: edit and restart the container (see `kws-stream config check`).
[wyoming]
uri = "tcp://0.0.0.0:10400"  # inside the container; publish it with -p 10400:10400
TOML
    mv "$config.part" "$config"
fi
exec kws-stream "$@"
