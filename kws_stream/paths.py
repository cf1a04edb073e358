"""Where kws-stream keeps what must survive upgrades (models, enrolled words)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir(name: str) -> Path:
    """$STATE_DIRECTORY/NAME under systemd (StateDirectory=), else $XDG_DATA_HOME/kws-stream/NAME."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / name
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "kws-stream" / name
