"""The one exception type users see: its message is the whole one-line error."""


class KwsError(Exception):
    """A problem the user can fix; the CLI prints `kws-stream: <message>` and exits non-zero."""

    exit_code = 1


class InputError(KwsError):
    """A bad input file; other files in the same run are still processed."""

    exit_code = 2
