"""One-line user errors and secret redaction.

Every entry point raises :class:`LsdgraphError` for bad input or an unusable environment; the CLI
prints ``str(err)`` as a single line (secrets redacted) and exits non-zero, never a traceback.

Redaction hides the password of any ``scheme://user:password@host`` in a text — users type
passwords unescaped, with ``@``, ``/``, ``:``, ``#`` or spaces in them, so the userinfo runs to
the *last* ``@`` of the URI (a host holds none) — plus secret query parameters and every
registered secret (:func:`register_secret`, :func:`redact_uri`).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from urllib.parse import unquote, unquote_plus

_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "***"
# A URI starts at the text's start or after a separator, never inside a word — nor inside a
# password such as ``pw:http://x``, which a ``:`` before the scheme would otherwise make a new URI.
_SCHEME = re.compile(r"(?<![^\s\"'`(<\[{=,;|])[A-Za-z][A-Za-z0-9+.-]*://")


def _secret_value(stops: str) -> str:
    """A value running to one of ``stops`` or whitespace, short of the punctuation that ends a URI
    in a message (``--db URI: …``)."""
    return rf"""([^{stops}\s]+?)(?=[:;,.)'"\]]*(?:[{stops}\s]|$))"""


# ?password=…, &tlsCertificateKeyFilePassword=…, X-Amz-Security-Token=…, X-Amz-Signature=…
_QUERY_SECRET = re.compile(r"(?i)(?<=[?&;])([\w.-]*(?:password|passwd|pwd|secret|token|signature)[\w.-]*=)"
                           + _secret_value("&#"))
# authMechanismProperties=AWS_SESSION_TOKEN:… (the ``:`` possibly escaped)
_PROPERTY_SECRET = re.compile(r"(?<=[=,])([A-Z][A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD)[A-Z0-9_]*(?::|%3[aA]))"
                              + _secret_value(",&#"))
# what a URI parser splits an unescaped password at, then echoes a piece of in its error
_DELIMITERS = re.compile(r"[@/:?#,;&=]+")
_MIN_PIECE = 4  # shorter pieces ("com", "db") would hide ordinary words everywhere


class LsdgraphError(Exception):
    """A problem the user can fix: the message names the input, where, and what to do."""

    def __init__(self, message: str):
        # redact before folding whitespace: a registered password may hold runs of spaces
        super().__init__(" ".join(redact(str(message)).split()))


class ServerLost(LsdgraphError):
    """The MongoDB server went away and retries did not bring it back: later files would fail the
    same way, so a multi-file load stops here (a rerun resumes)."""


def register_secret(secret: str | None) -> None:
    """Remember a secret (a password, an AWS secret key) so that :func:`redact` hides it."""
    if secret and len(secret) >= 3:
        with _lock:
            _secrets.add(secret)


def _password_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the password of every URI in ``text``.

    A URI's userinfo ends at the last ``@`` before the next URI or the end of the line; the
    password is what follows its first ``:``. A password may hold spaces, so an unrelated ``@``
    later on the same line is taken for the end of one too: hiding too much beats showing it."""
    found = list(_SCHEME.finditer(text))
    for m, nxt in zip(found, [*found[1:], None], strict=False):  # no match: one None, no pairs
        stop = nxt.start() if nxt else len(text)
        newline = text.find("\n", m.end(), stop)
        stop = stop if newline < 0 else newline
        at = text.rfind("@", m.end(), stop)
        colon = text.find(":", m.end(), at) if at >= 0 else -1
        if colon >= 0 and colon + 1 < at:
            yield colon + 1, at


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):  # overlapping spans (a token inside a password=…) become one
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + MASK + text[end:]
    return text


def _named_secrets(text: str) -> Iterator[re.Match]:
    yield from _QUERY_SECRET.finditer(text)
    yield from _PROPERTY_SECRET.finditer(text)


def _mask_patterns(text: str) -> tuple[str, list[str]]:
    """``text`` with secret query values and URI passwords masked, and the values masked."""
    named = [m.span(2) for m in _named_secrets(text)]
    found = [text[a:b] for a, b in named]
    # the userinfo is found once the query values (which may hold an "@") are out
    text = _mask_spans(text, named)
    spans = list(_password_spans(text))
    found += [text[a:b] for a, b in spans]
    return _mask_spans(text, spans), found


def redact(text: str) -> str:
    """Hide URI passwords, secret query parameters and every registered secret in ``text``;
    a text without them comes back unchanged."""
    text, _ = _mask_patterns(str(text))
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        text = text.replace(s, MASK)
    return text


def _register_with_forms(secret: str) -> None:
    """Register ``secret`` as typed, percent-decoded (``+`` as a space too, as pymongo decodes
    userinfo), and the pieces a parser may echo after splitting it at a URI delimiter."""
    forms = {secret, unquote(secret), unquote_plus(secret)}
    for form in forms:
        register_secret(form)
        for piece in _DELIMITERS.split(form):
            if len(piece.strip()) >= _MIN_PIECE:
                register_secret(piece)


def redact_uri(uri: str) -> str:
    """``mongodb://user:pw@host`` → ``mongodb://user:***@host``; the password and secret query
    values are registered, so they stay hidden wherever else they appear (a driver's error)."""
    masked, found = _mask_patterns(str(uri))
    for secret in found:
        _register_with_forms(secret)
    return redact(masked)


def redact_record(doc: dict) -> dict:
    """A copy of a record (e.g. an ``lsdgraph_meta`` document) with every string value redacted,
    in nested documents and lists too; keys and other values are kept."""
    return {k: _redact_value(v) for k, v in doc.items()}


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return redact_record(value)
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact_value(v) for v in value)
    return value
