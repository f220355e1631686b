"""Where dumps come from: local files and folders, or S3 (the public ``open-neurodata`` bucket or any
S3-compatible store), as byte streams that can start at any offset (so a load can resume).

Every stream is pinned to the version that was listed: an S3 object by its ETag (each GET sends
``If-Match`` and the response is checked), a local file by its size and mtime. A file that changes
under a load raises :class:`SourceChanged` instead of splicing two versions together."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lsdgraph._core import retry
from lsdgraph._core.errors import LsdgraphError, register_secret
from lsdgraph._io.bsonio import Readable

T = TypeVar("T")


class SourceChanged(LsdgraphError):
    """The file or object is no longer the version that was listed: the bytes already loaded and
    the rest cannot be joined. Not transient; a rerun lists the new version and loads it."""



class Stream(Readable, Protocol):
    """A source file open for reading: what :func:`bsonio.iter_docs` reads, and ``close``."""

    def close(self) -> None: ...

@dataclass
class S3Options:
    """How to reach S3: anonymous unless a profile or credentials in the environment are given."""

    profile: str | None = None
    endpoint_url: str | None = None
    anonymous: bool | None = None  # None: decide from profile / environment
    # botocore's own retries per request; the dump reader passes 0 and retries with
    # lsdgraph.retry, so that the two policies do not multiply
    botocore_retries: int = 5

    def client(self):
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        env_creds = bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
        anonymous = self.anonymous if self.anonymous is not None else not (self.profile or env_creds)
        cfg = Config(retries={"max_attempts": self.botocore_retries, "mode": "standard"}, connect_timeout=10,
                     read_timeout=60, signature_version=UNSIGNED if anonymous else None)
        try:
            session = boto3.session.Session(profile_name=self.profile) if self.profile else boto3.session.Session()
        except Exception as e:  # ProfileNotFound and friends
            raise LsdgraphError(f"AWS profile {self.profile!r} cannot be used: {e}; check ~/.aws/config") from None
        if not anonymous:
            creds = session.get_credentials()
            if creds is not None:
                frozen = creds.get_frozen_credentials()
                register_secret(frozen.secret_key)
                register_secret(frozen.token)
        register_secret(os.environ.get("AWS_SECRET_ACCESS_KEY"))
        register_secret(os.environ.get("AWS_SESSION_TOKEN"))
        endpoint = self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        region = session.region_name or "us-east-1"
        return session.client("s3", endpoint_url=endpoint, config=cfg, region_name=region)


@dataclass
class SourceFile:
    """One file to load: its URL, its path relative to the source root, size and fingerprint
    (``size=..;etag=..`` or ``size=..;mtime_ns=..``). ``etag`` is the S3 version every read is
    pinned to (None for local files, which are pinned to size and mtime)."""

    url: str
    rel: str
    size: int
    fingerprint: str
    _open: Callable[[int], Stream] | None = field(repr=False, compare=False, default=None)
    etag: str | None = None

    def open(self, offset: int = 0) -> Stream:
        """A binary stream of the file from byte ``offset``; raises :class:`SourceChanged` (now or
        while reading) when the file is no longer the listed version."""
        if self._open is None:
            raise LsdgraphError(f"{self.url}: a listed file without a reader (internal: pass _open)")
        return self._open(offset)

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


def is_s3(url: str) -> bool:
    return str(url).startswith("s3://")


def split_s3(url: str) -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise LsdgraphError(f"{url}: no bucket in the S3 URL; write it as s3://bucket/prefix")
    return bucket, prefix


def _s3_error(url: str, e: BaseException) -> LsdgraphError:
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    e = _unwrap(e)
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        status = _status(e)
        if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
            return LsdgraphError(f"{url}: access denied (403): the object is not public; pass profile=NAME "
                                 "or set AWS credentials in the environment if you have access")
        if code in ("NoSuchBucket",):
            return LsdgraphError(f"{url}: no such bucket; check the bucket name")
        if code in ("NoSuchKey", "404") or status == 404:
            return LsdgraphError(f"{url}: no such key; list what is there with `lsdgraph ls`")
        return LsdgraphError(f"{url}: S3 error {code or status}: {e}")
    if isinstance(e, EndpointConnectionError):
        return LsdgraphError(f"{url}: cannot reach the S3 endpoint ({e}); check endpoint_url= and the network")
    if isinstance(e, NoCredentialsError):
        return LsdgraphError(f"{url}: no AWS credentials found; drop profile= for anonymous access to public buckets")
    return LsdgraphError(f"{url}: cannot read from S3: {e}")


# ---------------------------------------------------------------------------------------------
# which S3 errors are worth another try

_RETRY_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
                          "ThrottlingException", "500", "502", "503", "504"})
_RETRY_STATUS = frozenset({500, 502, 503, 504})


class _Retryable(Exception):
    """A ``ClientError`` that another try may cure (5xx, throttling); ``args[0]`` is the error."""


def _unwrap(e: BaseException) -> BaseException:
    return e.args[0] if isinstance(e, _Retryable) else e


def _status(e) -> int | None:
    return e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _is_retryable(e) -> bool:
    return e.response.get("Error", {}).get("Code", "") in _RETRY_CODES or _status(e) in _RETRY_STATUS


def _transient() -> tuple[type[BaseException], ...]:
    """Errors of the connection rather than of the request: connect/read time-outs, refused or
    closed connections, a body that ends early (``ConnectionError``), 5xx and throttling."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, IncompleteReadError
    from urllib3.exceptions import HTTPError

    return (BotoConnectionError, HTTPClientError, IncompleteReadError, HTTPError, OSError, _Retryable)


def _s3_retry(fn: Callable[[], T], url: str, *, give_up: Callable[[BaseException], BaseException],
              policy: retry.RetryPolicy = retry.DEFAULT,
              before_retry: Callable[[BaseException], None] | None = None) -> T:
    """``fn()`` under the retry policy; an S3 error that no retry cures (403, 404, ...) becomes
    the one-line :func:`_s3_error` at once."""
    from botocore.exceptions import BotoCoreError, ClientError

    transient = _transient()

    def attempt() -> T:
        try:
            return fn()
        except ClientError as e:
            if _is_retryable(e):
                raise _Retryable(e) from e
            raise _s3_error(url, e) from None
        except transient:
            raise
        except BotoCoreError as e:  # no credentials, bad parameters: the same next time
            raise _s3_error(url, e) from None

    # time.sleep looked up per call, so a test can patch it
    return retry.call(attempt, transient=transient, give_up=give_up, policy=policy,
                      before_retry=before_retry, sleep=time.sleep)


# ---------------------------------------------------------------------------------------------
# an S3 object as a stream


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _range_total(content_range: str | None) -> int | None:
    """The object size from ``bytes a-b/total`` (None when absent or ``*``)."""
    total = (content_range or "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


class _S3Stream:
    """A read-only stream over one S3 object from an offset, pinned to ``etag``: every GET (the
    first, each reconnect after a broken body) asks ``If-Match`` and checks the answer's ETag and
    size against the listing. Connecting and reading follow the retry policy."""

    def __init__(self, client, bucket: str, key: str, offset: int, size: int, etag: str | None = None, *,
                 policy: retry.RetryPolicy = retry.DEFAULT, retries: int | None = None):
        self.client, self.bucket, self.key = client, bucket, key
        self.pos, self.size, self.etag = offset, size, _unquote(etag)
        self.policy = policy if retries is None else dataclasses.replace(policy, retries=retries)
        self.body: Any = None  # botocore's StreamingBody while connected

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def connect(self) -> _S3Stream:
        """Send the first GET now, so a changed, missing or forbidden object fails at open."""
        if self.body is None and self.pos < self.size:
            self._retry(self._connect)
        return self

    def read(self, n: int = -1) -> bytes:
        if n == 0 or self.pos >= self.size:
            return b""
        return self._retry(lambda: self._read_once(n))

    def _retry(self, fn: Callable[[], T]) -> T:
        return _s3_retry(fn, self.url, give_up=self._gave_up, policy=self.policy,
                         before_retry=lambda e: self._drop())

    def _gave_up(self, e: BaseException) -> LsdgraphError:
        return LsdgraphError(f"{self.url}: reading failed at byte {self.pos} after {self.policy.retries} "
                             f"retries ({_unwrap(e)}); rerun to resume")

    def _read_once(self, n: int) -> bytes:
        if self.body is None:
            self._connect()
        data = self.body.read(n if n > 0 else None)
        if not data:
            # the body ended before the object did (a cut connection): the retry reconnects
            raise ConnectionError(f"the response ended at byte {self.pos} of {self.size}")
        self.pos += len(data)
        return data

    def _connect(self) -> None:
        from botocore.exceptions import ClientError

        pin = {"IfMatch": f'"{self.etag}"'} if self.etag else {}
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.pos}-", **pin)
        except ClientError as e:
            # 412: If-Match failed; 416: the object is now shorter than the listed size
            if _status(e) in (412, 416):
                raise self._changed(self._current_etag()) from None
            raise
        self._check(r)
        self.body = r["Body"]

    def _check(self, r: dict) -> None:
        """The answer is the listed version (for servers that ignore If-Match)."""
        etag = _unquote(r.get("ETag"))
        total = _range_total(r.get("ContentRange"))
        if total is None and r.get("ContentLength") is not None:
            # no Content-Range: a 200 with the whole object would be read as if from self.pos
            total = self.pos + int(r["ContentLength"])
        if (self.etag and etag and etag != self.etag) or (total is not None and total != self.size):
            r["Body"].close()
            raise self._changed(etag)

    def _current_etag(self) -> str:
        """Best effort, for the message only: a one-byte GET (HEAD is not always allowed to
        anonymous readers who may GET)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.key, Range="bytes=0-0")
            r["Body"].close()
            return _unquote(r.get("ETag")) or "unknown"
        except (ClientError, BotoCoreError):
            return "unknown"

    def _changed(self, now: str | None) -> SourceChanged:
        return SourceChanged(f"{self.url}: the object changed while it was being read (listed ETag "
                             f"{self.etag or 'unknown'}, now {now or 'unknown'}); rerun to load the new version")

    def _drop(self) -> None:
        body, self.body = self.body, None
        if body is not None:
            # a broken connection may fail to close too; it is dropped either way
            with contextlib.suppress(Exception):
                body.close()

    def close(self):
        self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# local files


class _LocalStream(io.BufferedReader):
    """A local file pinned to the size and mtime it was listed with: checked at open and when
    ``read`` reaches the end (one fstat), where a rewrite would otherwise go unnoticed."""

    def __init__(self, path: Path, listed: tuple[int, int]):
        super().__init__(io.FileIO(path, "rb"))
        self.path, self.listed = path, listed
        try:
            self.check()
        except SourceChanged:
            self.close()
            raise

    def check(self) -> None:
        st = os.fstat(self.fileno())
        size, mtime_ns = self.listed
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            what = f"size {size:,} → {st.st_size:,} bytes" if st.st_size != size else "same size, new mtime"
            raise SourceChanged(f"{self.path}: the file changed since it was listed ({what}); rerun")

    def read(self, n: int | None = -1) -> bytes:
        data = super().read(n)
        if not data or n is None or n < 0:
            self.check()
        return data


def _local_file(path: Path, root: Path) -> SourceFile:
    st = path.stat()
    rel = path.name if path == root else path.relative_to(root).as_posix()
    listed = (st.st_size, st.st_mtime_ns)

    def opener(offset: int) -> Stream:
        try:
            f = _LocalStream(path, listed)
        except OSError as e:
            raise LsdgraphError(f"{path}: cannot open: {e.strerror}") from None
        f.seek(offset)
        return f

    return SourceFile(str(path), rel, st.st_size, f"size={st.st_size};mtime_ns={st.st_mtime_ns}", opener)


# ---------------------------------------------------------------------------------------------
# listing


def list_files(source: str, *, suffix: str | None = ".bson", s3: S3Options | None = None
               ) -> list[SourceFile]:
    """All files at ``source`` (a file, a folder searched recursively, or ``s3://bucket/prefix``)
    ending in ``suffix`` (None: every file), sorted by path."""
    if is_s3(source):
        return list(_list_s3(source, suffix, s3 or S3Options()))
    root = Path(source).expanduser()
    if not root.exists():
        raise LsdgraphError(f"{source}: no such file or folder")
    if root.is_file():
        return [_local_file(root.resolve(), root.resolve())]
    root = root.resolve()
    paths = sorted(p for p in root.rglob("*") if p.is_file() and (suffix is None or p.name.endswith(suffix)))
    return [_local_file(p, root) for p in paths]


def _list_keys(client, bucket: str, prefix: str) -> list[tuple[str, int, str]]:
    """(key, size, unquoted ETag) of every object under ``prefix``."""
    from botocore.exceptions import ClientError

    found = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [(o["Key"], o["Size"], _unquote(o.get("ETag")) or "") for o in page.get("Contents", [])]
    except ClientError as e:
        # listing may be forbidden while reading the object itself is allowed
        if not prefix or prefix.endswith("/") or e.response.get("Error", {}).get("Code") != "AccessDenied":
            raise
        h = client.head_object(Bucket=bucket, Key=prefix)
        found = [(prefix, h["ContentLength"], _unquote(h.get("ETag")) or "")]
    return found


def _list_s3(url: str, suffix: str | None, opts: S3Options) -> Iterator[SourceFile]:
    bucket, prefix = split_s3(url)
    client = dataclasses.replace(opts, botocore_retries=0).client()
    found = _s3_retry(lambda: _list_keys(client, bucket, prefix), url, give_up=lambda e: _s3_error(url, e))
    single = any(key == prefix for key, _, _ in found) and not prefix.endswith("/")
    if single:
        found = [f for f in found if f[0] == prefix]
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    else:
        base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        found = [f for f in found if f[0].startswith(base)]
    for key, size, etag in sorted(found):
        if suffix is not None and not key.endswith(suffix):
            continue

        def opener(offset: int, key=key, size=size, etag=etag) -> Stream:
            return _S3Stream(client, bucket, key, offset, int(size), etag or None).connect()

        yield SourceFile(f"s3://{bucket}/{key}", key[len(base):], int(size), f"size={size};etag={etag}",
                         opener, etag=etag or None)
