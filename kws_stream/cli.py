"""The `kws-stream` command."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from . import config as cfg
from .enrolled import WordSet
from .errors import KwsError
from .events import Detection, EventBus
from .logsetup import setup_logging  # never blocks on a stalled stderr
from .models import install, installed_path, manifest_for, model_dir, open_model, verify
from .pipeline import PipelineParams
from .preflight import check_model, check_runnable
from .sinks import StdoutSink
from .verdicts import Reject

log = logging.getLogger("kws_stream")

MODES = {"command": True, "plain": False}  # --mode -> command.enabled


# ---------------------------------------------------------------- options, per subcommand

def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="TOML config file (default: $XDG_CONFIG_HOME/kws-stream/kws-stream.toml, "
                        "else /etc/kws-stream/kws-stream.toml, else the built-in defaults)")


def _model_options(p: argparse.ArgumentParser, choose: bool = True) -> None:
    g = p.add_argument_group("model")
    if choose:
        g.add_argument("--model", dest="model.name", metavar="NAME_OR_PATH",
                       help="micronet-l (default), micronet-m, or a .tflite path")
    g.add_argument("--model-dir", dest="model.dir", metavar="DIR", help="where models are installed")
    g.add_argument("--manifest", dest="model.manifest", metavar="FILE", help="an extra manifest with your own models")


def _spotting_options(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("detection")
    d.add_argument("--mode", choices=tuple(MODES),
                   help="command: only keywords spoken as commands, with a pause around them (default); "
                        "plain: every keyword, inside sentences too")
    d.add_argument("--stride", dest="detection.stride", type=int, metavar="HOPS",
                   help="run the model every HOPS x 20 ms")
    d.add_argument("--smoothing", dest="detection.smoothing", type=int, metavar="N",
                   help="average the last N inferences")
    d.add_argument("--threshold", dest="detection.threshold", type=float, metavar="P",
                   help="score needed to report (0-1]")
    d.add_argument("--refractory", dest="detection.refractory", type=float, metavar="SECONDS",
                   help="same keyword not reported again within")
    d.add_argument("--keywords", dest="detection.keywords", type=lambda s: s.split(","), metavar="K1,K2",
                   help="report only these")
    p.add_argument("--log-level", dest="service.log_level", choices=cfg.LOG_LEVELS)


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channel", dest="audio.channel", metavar="mix|N",
                   help="mix channels down (default) or take channel N")
    p.add_argument("--format", dest="output.format", choices=("json", "text"),
                   help="output: JSON lines (default) or text")


# ---------------------------------------------------------------- config and model

def build_config(args: argparse.Namespace) -> tuple[cfg.Config, Path | None]:
    """The config file (see `cfg.find`) with the command line's flags on top, and its path."""
    path = cfg.find(getattr(args, "config", None))
    base = cfg.load(path) if path is not None else cfg.Config()
    flags = {k: v for k, v in vars(args).items() if "." in k}
    if getattr(args, "mode", None):
        flags["command.enabled"] = MODES[args.mode]
    return cfg.override(base, flags), path


def configured(args: argparse.Namespace) -> cfg.Config:
    """`build_config`, then logging at its level (a one-shot command's start)."""
    config, path = build_config(args)
    start_logging(config.service.log_level, path)
    return config


def start_logging(level: str, path: Path | None) -> None:
    """Logging at the configured level, then which config file is in use. A file is
    logged at info (it changes results); the defaults at debug, so `detect` stays quiet."""
    setup_logging(level)
    if path is not None:
        log.info("event=config file=%s", path)
    else:
        log.debug("event=config file=none using=defaults")


def stdout_is_closed() -> bool:
    """True when the process started with fd 1 closed (`>&-`); fd 1 is then pointed at
    /dev/null, so no file opened later can take its number and receive our output."""
    try:
        os.fstat(1)
        return sys.stdout is None
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)
        return True


def _need_stdout(command: str, alternative: str = "") -> None:
    raise cfg.ConfigError(f"stdout is closed: `{command}` writes detections there; "
                          f"redirect it (e.g. >/dev/null){alternative} instead of closing it")


# ---------------------------------------------------------------- commands

def with_words(config: cfg.Config, words: WordSet) -> PipelineParams:
    """The config's pipeline parameters with the enrolled `words`."""
    return dataclasses.replace(config.pipeline_params(), words=words)


def cmd_detect(args: argparse.Namespace) -> int:
    from .detect import FileError, detect_files
    from .enrolled import WordLoader
    from .explain import explain_line
    from .judge import JudgeVerdict

    if args.stdout_closed:
        _need_stdout("detect")
    config = configured(args)
    words = WordLoader().load()
    check_model(config, words.known)
    model, model_name = open_model(config)
    params = with_words(config, words)
    if args.explain:  # every candidate plain spotting would see, not only those near a command-like burst
        params = dataclasses.replace(params, eager_inference=True)

    judged: dict[tuple[str, str, float], JudgeVerdict] = {}  # the second judge's verdicts, for the lines

    def explain(detection: Detection, verdict: str, rule: Reject | None = None, enrolled: bool = False) -> None:
        judge = judged.pop((detection.source, detection.keyword, detection.end), None)
        print(explain_line(detection, params, verdict, rule, enrolled=enrolled, judge=judge), file=sys.stderr, flush=True)

    rejected = (lambda d, rule: explain(d, "rejected", rule)) if args.explain else None
    scored = (lambda d, reported: explain(d, "reported" if reported else "rejected", enrolled=True)) \
        if args.explain else None
    on_judge = (lambda d, v: judged.__setitem__((d.source, d.keyword, d.end), v)) if args.explain else None
    bus = EventBus([StdoutSink(config.output.format)]).start()
    status = 0
    try:
        for found in detect_files(args.files, model, model_name, params, config.audio.channel_index(), rejected,
                                  scored, on_judge):
            if isinstance(found, FileError):
                print(f"kws-stream: {found.error}", file=sys.stderr)
                status = found.error.exit_code
            else:
                if args.explain and found.keyword not in words.names:  # a word's line came with its score
                    explain(found, "reported")
                bus.publish(found)
            if bus.sink_closed.is_set():
                break
    finally:
        bus.close()
    return status


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import run_service  # installs the signal handlers before loading anything
    from .enrolled import WordLoader

    path = cfg.find(args.config)
    words = WordLoader()
    logging_started = False

    def load() -> tuple[cfg.Config, PipelineParams]:
        """The config and the enrolled words, at start and on each SIGHUP: refused (exit 2 /
        reload rejected) when `run` could not work with them."""
        nonlocal logging_started
        config, _ = build_config(args)
        if args.stdout_closed and config.output.stdout:
            _need_stdout("run", " or set [output] stdout = false")
        if not logging_started:  # a word file's warning is a log line like any other
            setup_logging(config.service.log_level)
            logging_started = True
        enrolled = words.load()
        check_runnable(config, enrolled=enrolled.known)
        return config, with_words(config, enrolled)

    return run_service(load, lambda level: start_logging(level, path), open_model)


def cmd_serve_wyoming(args: argparse.Namespace) -> int:
    from .service import Notifier, Signals, StopRequested

    signals = Signals().install()  # before the model loads: SIGHUP is kept (and ignored), SIGTERM exits 0
    try:
        from .enrolled import WordLoader
        from .wyoming_server import serve

        config = configured(args)
        words = WordLoader().load()
        check_runnable(config, mqtt=False, enrolled=words.known)
        model, model_name = open_model(config)
        signals.starting = False
    except StopRequested as exc:
        log.info("event=stopped_while_starting signal=%s", exc)
        return 0
    with Notifier() as notifier:
        params = with_words(config, words)
        if args.zeroconf is None:
            return serve(config, model, model_name, notifier, signals, params)
        from .zeroconf_announce import Announcing

        with Announcing(notifier, config.wyoming.uri, args.zeroconf or None) as announcing:
            return serve(config, model, model_name, announcing, signals, params)


def cmd_enroll(args: argparse.Namespace) -> int:
    from .wordcmds import enroll

    if args.takes is not None and not args.record:
        raise cfg.ConfigError("--takes counts the takes of --record: give --record too, or recordings instead")
    return enroll(configured(args), args.name, args.files, (args.takes or 5) if args.record else None)


def cmd_words_list(args: argparse.Namespace) -> int:
    from .wordcmds import words_list

    return words_list()


def cmd_words_remove(args: argparse.Namespace) -> int:
    from .wordcmds import words_remove

    return words_remove(args.name)


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
    path = cfg.find(args.file)
    if path is None:
        print(f"no config file at {cfg.find_candidates()[0]} or {cfg.SYSTEM_CONFIG}: the defaults apply")
        return 0
    from .wordstore import WordStore

    check_runnable(cfg.load(path), enrolled=WordStore().names())  # it may name enrolled words
    print(f"{path}: ok")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    config = configured(args)
    manifest = manifest_for(config)
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
    config = configured(args)
    manifest = manifest_for(config)
    if args.name not in (None, "all") and args.name not in manifest.models:
        raise cfg.ConfigError(f"unknown model {args.name!r}; {cfg.did_you_mean(args.name, sorted(manifest.models))}")
    source = args.source or config.model.source or None
    if source and "://" not in source and not Path(source).expanduser().exists():
        raise cfg.ConfigError(f"model source {source}: no such file or directory")
    names = sorted(n for n, s in manifest.models.items() if s.path is None) if args.name == "all" \
        else [args.name or manifest.default]
    for name in names:
        spec = manifest.get(name)
        installed = install(spec, model_dir(config), source, progress=sys.stderr.isatty())
        print(f"installed {name} -> {installed} (sha1 {spec.sha1} verified)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kws-stream", description="Always-on keyword spotting with MicroNet.")
    parser.add_argument("--version", action="version", version=f"kws-stream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="spot keywords in WAV files, exactly as the live pipeline would")
    p.add_argument("files", nargs="+", metavar="FILE.wav")
    p.add_argument("--explain", action="store_true",
                   help="one key=value line on stderr per reported and per rejected candidate: score, "
                        "threshold, window and (command mode) the rule that rejected it; runs the model "
                        "at every hop, so it is slower, and reports the same detections")
    _config_options(p)
    _model_options(p)
    _spotting_options(p)
    _output_options(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("run", help="listen to the microphone and print detections (the daemon)")
    _config_options(p)
    _model_options(p)
    _spotting_options(p)
    _output_options(p)
    a = p.add_argument_group("audio")
    a.add_argument("--device", dest="audio.device", metavar="INDEX_OR_NAME",
                   help="input device (see `kws-stream devices`)")
    a.add_argument("--sample-rate", dest="audio.sample_rate", type=int, metavar="HZ",
                   help="capture rate (default: auto)")
    a.add_argument("--channels", dest="audio.channels", type=int, metavar="N", help="capture channels (default: auto)")
    p.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="network services").add_subparsers(dest="serve_command", required=True)
    p = serve.add_parser("wyoming", help="a Wyoming wake-word service (Home Assistant) on --uri")
    p.add_argument("--uri", dest="wyoming.uri", metavar="URI",
                   help="tcp://HOST:PORT or unix://PATH (default tcp://127.0.0.1:10400)")
    p.add_argument("--zeroconf", nargs="?", const="", metavar="NAME",
                   help="announce the service over mDNS as _wyoming._tcp (Home Assistant discovers it), "
                        "named NAME (default kws-stream-HOSTNAME); needs a tcp:// --uri. Off by default")
    _config_options(p)
    _model_options(p)
    _spotting_options(p)
    p.set_defaults(func=cmd_serve_wyoming)

    p = sub.add_parser("enroll", help="register a word of your own from 3-10 recordings of it (or --record them)",
                       description="Register a word of your own, reported like a keyword by detect, run and "
                                   "serve wyoming when said as a command (alone, with a pause around it). Words are "
                                   "kept in $STATE_DIRECTORY/words under systemd, else "
                                   "$XDG_DATA_HOME/kws-stream/words (~/.local/share/kws-stream/words).")
    p.add_argument("name", metavar="NAME", help="the word's name: lower-case letters, digits and _ (e.g. view_glass)")
    p.add_argument("files", nargs="*", metavar="FILE.wav",
                   help="3 to 10 recordings of the word alone (any rate and channels), several speakers if "
                        "several will use it")
    p.add_argument("--record", action="store_true", help="say the word at the microphone instead (--takes times)")
    p.add_argument("--takes", type=int, metavar="N", help="with --record: takes to record (3-10, default 5)")
    a = p.add_argument_group("audio")
    a.add_argument("--device", dest="audio.device", metavar="INDEX_OR_NAME",
                   help="input device for --record (see `kws-stream devices`)")
    a.add_argument("--channel", dest="audio.channel", metavar="mix|N",
                   help="mix channels down (default) or take channel N")
    _config_options(p)
    _model_options(p)
    p.set_defaults(func=cmd_enroll)

    words = sub.add_parser("words", help="list or remove enrolled words").add_subparsers(dest="words_command",
                                                                                         required=True)
    p = words.add_parser("list", help="the enrolled words, their thresholds and files")
    p.set_defaults(func=cmd_words_list)
    p = words.add_parser("remove", help="forget an enrolled word")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_words_remove)

    p = sub.add_parser("devices", help="list input devices")
    p.set_defaults(func=cmd_devices)

    conf = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_command", required=True)
    p = conf.add_parser("check", help="validate a config file without starting: whatever it accepts runs")
    p.add_argument("file", nargs="?", type=Path,
                   help="default: the file the other commands read ($XDG_CONFIG_HOME/kws-stream/kws-stream.toml, "
                        "else /etc/kws-stream/kws-stream.toml)")
    p.set_defaults(func=cmd_config_check)

    models = sub.add_parser("models", help="list or install models").add_subparsers(dest="models_command",
                                                                                    required=True)
    p = models.add_parser("list", help="models in the manifest and whether they are installed")
    _config_options(p)
    _model_options(p, choose=False)
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("install", help="install (download or copy) and verify a model")
    p.add_argument("name", nargs="?", help="model name (default: the manifest default) or 'all'")
    p.add_argument("--from", dest="source", metavar="DIR_OR_URL",
                   help="a directory or URL holding the .tflite (default: [model] source, else the manifest URL)")
    _config_options(p)
    _model_options(p, choose=False)
    p.set_defaults(func=cmd_models_install)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    stdout_closed = stdout_is_closed()
    args = build_parser().parse_args(argv)
    args.stdout_closed = stdout_closed
    if args.func not in (cmd_run, cmd_serve_wyoming):  # the services take over entry's early handlers
        from .entry import restore_default_signals

        restore_default_signals()
    try:
        return int(args.func(args))
    except KwsError as exc:
        print(f"kws-stream: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
