"""Where dumps come from: local files and folders, or S3 (the public ``open-neurodata`` bucket or any
S3-compatible store), as byte streams that can start at any offset (so a load can resume)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .errors import LsdgraphError, register_secret


@dataclass
class S3Options:
    """How to reach S3: anonymous unless a profile or credentials in the environment are given."""

    profile: str | None = None
    endpoint_url: str | None = None
    anonymous: bool | None = None  # None: decide from profile / environment

    def client(self):
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        env_creds = bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
        anonymous = self.anonymous if self.anonymous is not None else not (self.profile or env_creds)
        cfg = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10,
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
    """One file to load: its URL, its path relative to the source root, size and fingerprint."""

    url: str
    rel: str
    size: int
    fingerprint: str
    _open: Callable[[int], BinaryIO] = field(repr=False, compare=False, default=None)

    def open(self, offset: int = 0) -> BinaryIO:
        """A binary stream of the file from byte ``offset``."""
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


def _s3_error(url: str, e: Exception) -> LsdgraphError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
            return LsdgraphError(f"{url}: access denied (403): the object is not public; pass --profile "
                                 "or set AWS credentials in the environment if you have access")
        if code in ("NoSuchBucket",):
            return LsdgraphError(f"{url}: no such bucket; check the bucket name")
        if code in ("NoSuchKey", "404") or status == 404:
            return LsdgraphError(f"{url}: no such key; list what is there with `lsdgraph ls`")
        return LsdgraphError(f"{url}: S3 error {code or status}: {e}")
    if isinstance(e, EndpointConnectionError):
        return LsdgraphError(f"{url}: cannot reach the S3 endpoint ({e}); check --endpoint-url and the network")
    if isinstance(e, NoCredentialsError):
        return LsdgraphError(f"{url}: no AWS credentials found; drop --profile for anonymous access to public buckets")
    return LsdgraphError(f"{url}: cannot read from S3: {e}")


class _S3Stream:
    """A read-only stream over one S3 object from an offset; reconnects on a broken body."""

    def __init__(self, client, bucket: str, key: str, offset: int, size: int, retries: int = 5):
        self.client, self.bucket, self.key = client, bucket, key
        self.pos, self.size, self.retries = offset, size, retries
        self.body = None

    def _connect(self):
        from botocore.exceptions import BotoCoreError, ClientError

        if self.pos >= self.size:
            self.body = None
            return
        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.pos}-")
        except (ClientError, BotoCoreError) as e:
            raise _s3_error(f"s3://{self.bucket}/{self.key}", e) from None
        self.body = r["Body"]

    def read(self, n: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        for attempt in range(self.retries + 1):
            try:
                if self.body is None:
                    self._connect()
                    if self.body is None:
                        return b""
                data = self.body.read(n if n and n > 0 else None)
                if not data and self.pos < self.size:
                    # the body ended before the object did (a cut connection): reconnect
                    raise ConnectionError(f"the response ended at byte {self.pos} of {self.size}")
                self.pos += len(data)
                return data
            except (BotoCoreError, HTTPError, ConnectionError, OSError) as e:
                self.body = None
                if attempt == self.retries:
                    raise LsdgraphError(f"s3://{self.bucket}/{self.key}: reading failed at byte {self.pos} "
                                        f"after {self.retries} retries ({e}); rerun to resume") from None
                time.sleep(min(0.2 * 2 ** attempt, 5))
        return b""

    def close(self):
        if self.body is not None:
            self.body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _local_file(path: Path, root: Path) -> SourceFile:
    st = path.stat()
    rel = path.name if path == root else path.relative_to(root).as_posix()

    def opener(offset: int, p=path) -> BinaryIO:
        try:
            f = open(p, "rb")
        except OSError as e:
            raise LsdgraphError(f"{p}: cannot open: {e.strerror}") from None
        f.seek(offset)
        return f

    return SourceFile(str(path), rel, st.st_size, f"size={st.st_size};mtime_ns={st.st_mtime_ns}", opener)


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


def _list_s3(url: str, suffix: str | None, opts: S3Options) -> Iterator[SourceFile]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3(url)
    client = opts.client()
    found = []
    try:
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                found += [(o["Key"], o["Size"], o.get("ETag", "")) for o in page.get("Contents", [])]
        except ClientError as e:
            # listing may be forbidden while reading the object itself is allowed
            if not prefix or prefix.endswith("/") or e.response.get("Error", {}).get("Code") != "AccessDenied":
                raise
            h = client.head_object(Bucket=bucket, Key=prefix)
            found = [(prefix, h["ContentLength"], h.get("ETag", ""))]
    except (ClientError, BotoCoreError) as e:
        raise _s3_error(url, e) from None
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

        def opener(offset: int, key=key, size=size) -> BinaryIO:
            return _S3Stream(client, bucket, key, offset, size)

        yield SourceFile(f"s3://{bucket}/{key}", key[len(base):], int(size),
                         f"size={size};etag={etag.strip(chr(34))}", opener)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
