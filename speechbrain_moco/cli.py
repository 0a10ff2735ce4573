"""What every command does with a user's mistake: one line naming the option, file or line
and what to do, exit status 2; the traceback only on request (``SBMOCO_TRACEBACK=1``;
SpeechBrain's ``--debug`` already means a two-batch run). Errors of the code itself
(anything else) keep their traceback.

Example
-------
>>> import contextlib, io
>>> err = io.StringIO()
>>> with contextlib.redirect_stderr(err):
...     try:
...         with user_errors("demo"):
...             raise FileNotFoundError("trial list not found: t.txt")
...     except SystemExit as stop:
...         print(stop.code)
2
>>> err.getvalue().splitlines()[0]
'demo: error: trial list not found: t.txt'
"""

import contextlib
import os
import sys
import traceback

from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import AudioError

logger = get_logger(__name__)

TRACEBACK_ENV = "SBMOCO_TRACEBACK"


class UserError(Exception):
    """A mistake in what the user gave (a value, a file, a combination of options)."""


class StageFailed(RuntimeError):
    """A stage command of a pipeline failed; its message ends with the tail of its log."""


# what a user's input causes: missing or unreadable files, bad values, unknown keys
USER_ERRORS = (
    UserError,
    StageFailed,
    AudioError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FileExistsError,
    ValueError,
    KeyError,
)


def message_of(err):
    """The message of an exception (a ``KeyError``'s without its quotes)."""
    if isinstance(err, KeyError) and len(err.args) == 1:
        return str(err.args[0])
    return str(err) or type(err).__name__


@contextlib.contextmanager
def user_errors(program):
    """Around a command's work: a user error becomes ``PROGRAM: error: MESSAGE`` on stderr and
    exit status 2 (the traceback goes to the log at debug level, and to stderr with
    ``SBMOCO_TRACEBACK=1``)."""
    try:
        yield
    except USER_ERRORS as err:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        logger.debug("%s", traceback.format_exc())
        lines = message_of(err).splitlines() or [type(err).__name__]
        print(f"{program}: error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:  # a failed stage's log tail
            print(f"  {line}", file=sys.stderr)
        print(f"  (the traceback: set {TRACEBACK_ENV}=1)", file=sys.stderr)
        raise SystemExit(2) from None


def check_device(device):
    """A ``--device`` this machine has: ``cuda[:N]`` needs a CUDA device (a ``UserError``
    naming the option otherwise)."""
    import torch

    device = str(device or "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device={device}: this machine has no CUDA device; use --device=cpu")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UserError(
                f"--device={device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
    return device


def device_argument(argv):
    """The ``--device`` of a command line (``--device=X`` or ``--device X``), ``cpu`` without.

    Example
    -------
    >>> device_argument(["h.yaml", "--device", "cuda:1"]), device_argument(["--lr=1"])
    ('cuda:1', 'cpu')
    """
    for i, arg in enumerate(argv):
        if arg.startswith("--device="):
            return arg.split("=", 1)[1]
        if arg == "--device" and i + 1 < len(argv):
            return argv[i + 1]
    return "cpu"
