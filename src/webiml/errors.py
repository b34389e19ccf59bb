"""The errors a user can fix, in one place: what ``webiml`` reports as one line instead of a traceback.

A command that cannot go on raises :class:`UsageError` (what was typed is wrong: a flag, a params
key or value, an output path; exit 2) or :class:`DataError` (a file is not what it should be: a
checkpoint, an index, a JSON or YAML file; exit 1), with a message that names the file or key and
says why. :func:`expected` and :func:`exit_code` decide, for any exception, whether the user sees
``webiml <command>: error: <message>`` and with which exit code; anything else is a bug and stays a
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; its message says what is wrong and why."""

    exit_code = 1


class DataError(UserError, ValueError):
    """A file's content is not what it should be (exit 1)."""


class UsageError(UserError, ValueError):
    """What was typed is wrong: a flag, a params key or value, an output path (exit 2)."""

    exit_code = 2


class UnknownName(UsageError, KeyError):
    """A name (model, variant, photo, ...) that is not in its table; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


#: paths the user named that are not there or not of the right kind (exit 2)
_PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


def expected(e: BaseException) -> bool:
    """Whether ``e`` is reported as one line: a :class:`UserError`, an :class:`OSError` (a path,
    a permission, a full disk), a ``ValueError`` (a value or a file's content), or a rejected
    input (``webiml.io.Rejected``, a :class:`UserError`)."""
    return isinstance(e, (UserError, OSError, ValueError))


def exit_code(e: BaseException) -> int:
    """2 for usage errors (including a named path that is missing or of the wrong kind), 1 otherwise."""
    return 2 if isinstance(e, (UsageError, *_PATH_ERRORS)) else 1


def message(e: BaseException) -> str:
    """The one line a user sees for ``e`` (an OSError without its own text gets its path and reason)."""
    if isinstance(e, OSError) and e.filename is not None and not (e.args and len(e.args) == 1):
        return f"{e.filename}: {e.strerror or type(e).__name__}"
    text = str(e) or type(e).__name__
    return " ".join(text.split())  # one line
