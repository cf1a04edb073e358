"""The `kws-stream` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from . import config as cfg
from .errors import InputError, KwsError
from .events import EventBus
from .models import default_model_dir, install, installed_path, load_manifest, resolve, user_config_dir, verify
from .sinks import StdoutSink

log = logging.getLogger("kws_stream")


def setup_logging(level: str) -> None:
    """One line per event on stderr: `level=... event=... key=value`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s level=%(levelname)s %(message)s",
                                           datefmt="%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("kws_stream")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file (see config/kws-stream.toml)")
    g = p.add_argument_group("model")
    g.add_argument("--model", dest="model.name", metavar="NAME_OR_PATH", help="micronet-l (default), micronet-m, or a .tflite path")
    g.add_argument("--model-dir", dest="model.dir", metavar="DIR", help="where models are installed")
    g.add_argument("--model-source", dest="model.source", metavar="DIR_OR_URL", help="install a missing model from here")
    g.add_argument("--manifest", dest="model.manifest", metavar="FILE", help="an extra manifest with your own models")
    d = p.add_argument_group("detection")
    d.add_argument("--stride", dest="detection.stride", type=int, metavar="HOPS", help="run the model every HOPS x 20 ms")
    d.add_argument("--smoothing", dest="detection.smoothing", type=int, metavar="N", help="average the last N inferences")
    d.add_argument("--threshold", dest="detection.threshold", type=float, metavar="P", help="score needed to report (0-1)")
    d.add_argument("--refractory", dest="detection.refractory", type=float, metavar="SECONDS", help="same keyword not reported again within")
    d.add_argument("--keywords", dest="detection.keywords", type=lambda s: s.split(","), metavar="K1,K2", help="report only these")
    p.add_argument("--channel", dest="audio.channel", metavar="mix|N", help="mix channels down (default) or take channel N")
    p.add_argument("--format", dest="output.format", choices=("json", "text"), help="output: JSON lines (default) or text")
    p.add_argument("--log-level", dest="service.log_level", choices=cfg.LOG_LEVELS)


def build_config(args: argparse.Namespace) -> cfg.Config:
    base = cfg.load(args.config) if getattr(args, "config", None) else cfg.Config()
    flags = {k: v for k, v in vars(args).items() if "." in k}
    return cfg.override(base, flags)


def model_dir(config: cfg.Config) -> Path:
    return Path(config.model.dir).expanduser() if config.model.dir else default_model_dir()


def open_model(config: cfg.Config) -> tuple[Any, str]:
    """Resolve, install if needed, verify and load the configured model."""
    from .backend import KeywordModel

    manifest = load_manifest(tuple(Path(m) for m in [config.model.manifest] if m))
    spec, path = resolve(config.model.name, model_dir(config), manifest, config.model.source or None,
                         progress=sys.stderr.isatty())
    return KeywordModel(path, spec.labels, num_threads=config.model.threads), spec.name


def cmd_detect(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .sources import WavFileSource

    config = build_config(args)
    setup_logging(config.service.log_level)
    model, model_name = open_model(config)
    params = config.pipeline_params()
    bus = EventBus([StdoutSink(config.output.format)])
    status = 0
    try:
        for name in args.files:
            if bus.sink_closed.is_set():
                break
            try:
                source = WavFileSource(Path(name), config.audio.channel_index())
            except InputError as exc:
                print(f"kws-stream: {exc}", file=sys.stderr)
                status = exc.exit_code
                continue
            pipeline = Pipeline(model, model_name, name, params)
            try:
                for block in source.blocks():
                    for detection in pipeline.feed(block):
                        bus.publish(detection)
                    if bus.sink_closed.is_set():
                        break
            except InputError as exc:  # a pipe shows a truncation only when it ends
                print(f"kws-stream: {exc}", file=sys.stderr)
                status = exc.exit_code
            for detection in pipeline.finish():
                bus.publish(detection)
    finally:
        bus.close()
    return status


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import run_service  # installs the signal handlers before loading anything

    return run_service(lambda: build_config(args), setup_logging, open_model)


def cmd_serve_wyoming(args: argparse.Namespace) -> int:
    from .service import Notifier
    from .wyoming_server import serve

    config = build_config(args)
    setup_logging(config.service.log_level)
    model, model_name = open_model(config)
    return serve(config, model, model_name, Notifier())


def cmd_devices(args: argparse.Namespace) -> int:
    from .capture import list_input_devices

    devices = list_input_devices()
    if not devices:
        print("kws-stream: no input devices found (is the microphone plugged in and the user in the audio group?)",
              file=sys.stderr)
        return 1
    print(f"  {'index':>5}  {'name':<40} {'host API':<12} {'channels':>8} {'default rate':>12}")
    for dev in devices:
        mark = "*" if dev["default"] else " "
        print(f"{mark} {dev['index']:>5}  {dev['name'][:40]:<40} {dev['hostapi'][:12]:<12} "
              f"{dev['channels']:>8} {dev['default_rate']:>12.0f}")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    path = args.file or default_config_path()
    cfg.load(path)
    print(f"{path}: ok")
    return 0


def default_config_path() -> Path:
    """/etc/kws-stream/kws-stream.toml when present, else the user's config dir."""
    system = Path("/etc/kws-stream/kws-stream.toml")
    return system if system.is_file() else user_config_dir() / "kws-stream.toml"


def cmd_models_list(args: argparse.Namespace) -> int:
    config = build_config(args)
    manifest = load_manifest(tuple(Path(m) for m in [config.model.manifest] if m))
    directory = model_dir(config)
    for name, spec in sorted(manifest.models.items()):
        path = installed_path(spec, directory)
        if not path.is_file():
            state = "not installed"
        else:
            try:
                verify(spec, path)
                state = f"installed  {path}"
            except KwsError:
                state = f"CORRUPT    {path}"
        default = "*" if name == manifest.default else " "
        print(f"{default} {name:<14} {state:<60} {spec.description}")
    return 0


def cmd_models_install(args: argparse.Namespace) -> int:
    config = build_config(args)
    manifest = load_manifest(tuple(Path(m) for m in [config.model.manifest] if m))
    names = sorted(n for n, s in manifest.models.items() if s.path is None) if args.name == "all" \
        else [args.name or manifest.default]
    for name in names:
        spec = manifest.get(name)
        path = install(spec, model_dir(config), args.source or config.model.source or None,
                       progress=sys.stderr.isatty())
        print(f"installed {name} -> {path} (sha1 {spec.sha1} verified)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kws-stream", description="Always-on keyword spotting with MicroNet.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="spot keywords in WAV files, exactly as the live pipeline would")
    p.add_argument("files", nargs="+", metavar="FILE.wav")
    _add_config_flags(p)
    p.set_defaults(func=cmd_detect)

    models = sub.add_parser("models", help="list or install models").add_subparsers(dest="models_command", required=True)
    p = sub.add_parser("run", help="listen to the microphone and print detections (the daemon)")
    _add_config_flags(p)
    a = p.add_argument_group("audio")
    a.add_argument("--device", dest="audio.device", metavar="INDEX_OR_NAME", help="input device (see `kws-stream devices`)")
    a.add_argument("--sample-rate", dest="audio.sample_rate", type=int, metavar="HZ", help="capture rate (default: auto)")
    a.add_argument("--channels", dest="audio.channels", type=int, metavar="N", help="capture channels (default: auto)")
    p.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="network services").add_subparsers(dest="serve_command", required=True)
    p = serve.add_parser("wyoming", help="a Wyoming wake-word service (Home Assistant) on --uri")
    p.add_argument("--uri", dest="wyoming.uri", metavar="URI",
                   help="tcp://HOST:PORT or unix://PATH (default tcp://127.0.0.1:10400)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_serve_wyoming)

    p = sub.add_parser("devices", help="list input devices")
    p.set_defaults(func=cmd_devices)

    conf = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_command", required=True)
    p = conf.add_parser("check", help="validate a config file without starting")
    p.add_argument("file", nargs="?", type=Path, help="default: /etc/kws-stream/kws-stream.toml or ~/.config/kws-stream/kws-stream.toml")
    p.set_defaults(func=cmd_config_check)

    p = models.add_parser("list", help="models in the manifest and whether they are installed")
    _add_config_flags(p)
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("install", help="install (download or copy) and verify a model")
    p.add_argument("name", nargs="?", help="model name (default: the manifest default) or 'all'")
    p.add_argument("--from", dest="source", metavar="DIR_OR_URL", help="a directory or URL holding the .tflite")
    _add_config_flags(p)
    p.set_defaults(func=cmd_models_install)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KwsError as exc:
        print(f"kws-stream: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
