# kws-stream as a container: `serve wyoming` on port 10400 by default (Home Assistant), or
# `run` for the live daemon. Debian bookworm-slim, amd64 and arm64 (same file for both).
#
#   docker build -t kws-stream --build-arg MODELS=DIR_OR_URL .
#   docker run -d -p 10400:10400 -v kws-data:/data kws-stream            # Wyoming on :10400
#   docker run -d --device /dev/snd -v kws-data:/data kws-stream run     # the live daemon
#
# MODELS: where `kws-stream models install all --from` takes the .tflite files (SHA-1
# checked against models/manifest.toml): a directory inside the build context, or a URL;
# empty = each model's manifest URL. The model files are never committed.
# BASE: the Debian bookworm image to build on (scripts/check-container.sh builds one with
# debootstrap for machines that reach Debian's archive but no container registry).
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
ARG MODELS=""
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
# The build secret `ca` (optional) is a CA bundle for pip, for a build network behind a TLS proxy:
# --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt. Used by this step only, never stored.
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install -q /src \
 && /opt/venv/bin/pip uninstall -q -y pip \
 && from="${MODELS:+--from}" && src="$MODELS" \
 && case "$MODELS" in ""|*://*) ;; *) src="/src/$MODELS";; esac \
 && /opt/venv/bin/kws-stream models install all $from ${from:+"$src"} --model-dir /opt/kws-stream/models

FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# python3: the venv's interpreter; libportaudio2: the microphone (ALSA via --device /dev/snd);
# ALSA's pulse plugin (PCM `pulse`), for a PulseAudio socket mounted from the host: only its two
# modules and its config are taken from libasound2-plugins, whose other plugins depend on
# libavcodec and ~200 MB of video codecs; the pulse modules need only libpulse0.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3 ca-certificates libportaudio2 libpulse0 >/dev/null \
 && mkdir /tmp/plugins && cd /tmp/plugins && apt-get download -qq libasound2-plugins \
 && dpkg-deb -x libasound2-plugins_*.deb . \
 && cp -a --parents $(find . -name 'libasound_module_*_pulse.so' -o -name '50-pulseaudio.conf') / \
 && cd / && rm -rf /tmp/plugins /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* \
 && useradd --uid 10400 --user-group --groups audio --home-dir /data --no-create-home --shell /usr/sbin/nologin kws \
 && mkdir -p /data && chown kws:kws /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/kws-stream/models /opt/kws-stream/models
COPY container/entrypoint.sh container/healthcheck.py container/addon.py /opt/kws-stream/
# /data: the config (/data/config/kws-stream/kws-stream.toml) and the models (/data/models),
# seeded from the image on first start and kept across restarts and upgrades
ENV PATH=/opt/venv/bin:$PATH XDG_CONFIG_HOME=/data/config STATE_DIRECTORY=/data \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER kws
WORKDIR /data
VOLUME /data
EXPOSE 10400
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "/opt/kws-stream/healthcheck.py"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/kws-stream/entrypoint.sh"]
CMD ["serve", "wyoming"]
