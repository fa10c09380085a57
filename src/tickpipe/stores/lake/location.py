"""Where the lake is: a `file://` directory or an `s3://bucket/prefix`, and the S3 client.

The URL and the client settings (`lake_endpoint`, `lake_region`) come from the config; the
credentials only from the environment (`TICKPIPE_LAKE_ACCESS_KEY_ID`,
`TICKPIPE_LAKE_SECRET_ACCESS_KEY`, or files their `_FILE` twins name), so they are never in
the config file, a log line or `describe()`.
Without them the AWS SDK's own chain (its variables, ~/.aws) applies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pyarrow import fs

from tickpipe.credentials import secret_env
from tickpipe.settings import Fail

if TYPE_CHECKING:
    from tickpipe.stores.lake.layout import Lake

ACCESS_KEY_ENV = "TICKPIPE_LAKE_ACCESS_KEY_ID"
SECRET_KEY_ENV = "TICKPIPE_LAKE_SECRET_ACCESS_KEY"
LAKE_SECRETS = (ACCESS_KEY_ENV, SECRET_KEY_ENV)  # each also as NAME_FILE
MIN_ROLL_BYTES = 1024
SCHEMES = "use s3://bucket/prefix or file:///absolute/path"


@dataclass(frozen=True)
class LakeSettings:
    """The lake's URL, S3 client settings and how files roll."""

    url: str
    endpoint: str = ""  # host:port or http(s)://host:port of an S3-compatible server
    region: str = ""
    roll_bytes: int = 64 * 1024 * 1024  # a partition's buffer (Arrow bytes) written at this size
    roll_every_s: float = 300.0  # ... or when its oldest row waited this long
    retry_for_s: float = 60.0  # how long a file's upload retries after losing the server


def check_lake_url(url: str, fail: Fail, key: str = "lake") -> str:
    """`url` stripped, or one config line naming `key` if it is not a lake URL."""
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            fail(key, url, f"not an absolute file:// URL; {SCHEMES}")
    elif parts.scheme == "s3":
        if not parts.netloc or "@" in parts.netloc:
            fail(key, "s3://...", f"no bucket (credentials go in {ACCESS_KEY_ENV}); {SCHEMES}")
    else:
        fail(key, url.split("://", 1)[0] + "://..." if "://" in url else url, SCHEMES)
    return url.rstrip("/")


def check_lake(settings: LakeSettings, fail: Fail) -> None:
    """The lake settings' one-line errors, each naming its key."""
    check_lake_url(settings.url, fail)
    if settings.roll_bytes < MIN_ROLL_BYTES:
        fail("lake_roll_bytes", settings.roll_bytes, f"must be at least {MIN_ROLL_BYTES}")
    if settings.roll_every_s <= 0:
        fail("lake_roll_every", settings.roll_every_s, "must be a positive duration (e.g. 5m)")
    endpoint = settings.endpoint
    if endpoint and "://" in endpoint and not endpoint.startswith(("http://", "https://")):
        fail("lake_endpoint", endpoint, "use host:port or http(s)://host:port")


def filesystem(
    settings: LakeSettings, env: Mapping[str, str] | None = None
) -> tuple[fs.FileSystem, str]:
    """pyarrow's file system for the lake's URL, and the root path inside it."""
    parts = urlsplit(settings.url)
    if parts.scheme == "file":
        return fs.LocalFileSystem(), parts.path.rstrip("/")
    env = secret_env(os.environ if env is None else env, LAKE_SECRETS)
    options: dict[str, object] = {}
    if settings.region:
        options["region"] = settings.region
    endpoint = settings.endpoint
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        options["endpoint_override"] = host
        options["scheme"] = scheme or "https"
    if env.get(ACCESS_KEY_ENV) and env.get(SECRET_KEY_ENV):
        options["access_key"] = env[ACCESS_KEY_ENV]
        options["secret_key"] = env[SECRET_KEY_ENV]
    # A lake on a private endpoint must never wait on the cloud's metadata address.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return fs.S3FileSystem(**options), (parts.netloc + parts.path).rstrip("/")


def open_lake(settings: LakeSettings, env: Mapping[str, str] | None = None) -> Lake:
    """The lake the settings name (its files are written by `Lake` and `LakeWriter`)."""
    from tickpipe.stores.lake.layout import Lake

    filesys, root = filesystem(settings, env)
    return Lake(filesys, root, settings)
