"""One-line user errors and secret redaction.

Every entry point raises :class:`LsdgraphError` for bad input or an unusable environment; the CLI
prints ``str(err)`` as a single line (secrets redacted) and exits non-zero, never a traceback.
"""
from __future__ import annotations

import re
import threading

_secrets: set[str] = set()
_lock = threading.Lock()
_URI_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^@/\s]+)(?=@)")


class LsdgraphError(Exception):
    """A problem the user can fix: the message names the input, where, and what to do."""

    def __init__(self, message: str):
        super().__init__(redact(" ".join(str(message).split())))


class ServerLost(LsdgraphError):
    """The MongoDB server went away and retries did not bring it back: later files would fail the
    same way, so a multi-file load stops here (a rerun resumes)."""


def register_secret(secret: str | None) -> None:
    """Remember a secret (a password, an AWS secret key) so that :func:`redact` hides it."""
    if secret and len(secret) >= 3:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """Hide URI passwords and every registered secret in ``text``."""
    text = _URI_PASSWORD.sub(lambda m: m.group("head") + "***", str(text))
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        text = text.replace(s, "***")
    return text


def redact_uri(uri: str) -> str:
    """``mongodb://user:pw@host`` → ``mongodb://user:***@host`` (and register the password)."""
    m = _URI_PASSWORD.search(uri)
    if m:
        from urllib.parse import unquote

        register_secret(m.group("pw"))
        register_secret(unquote(m.group("pw")))
    return redact(uri)
