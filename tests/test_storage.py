"""Object storage on both backends: a local folder, and a real S3 server (SeaweedFS) that checks
credentials and signatures."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import traceback
import tracemalloc
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dagster as dg
import pytest

from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.storage import (
    CredentialsRefused,
    LocalObjectStore,
    ObjectNotFound,
    S3ObjectStore,
    StorageError,
    StorageUnavailable,
    store_from_env,
)
from observatory_pipelines.defs import resources
from observatory_pipelines.defs.resources import StorageResource
from tests.factories import new_bucket, open_s3_store

CSV_KEY = "exports/forsker/klimadebat/2026-03/content.csv"
DANISH_KEY = "exports/søren_ærø/klimadebat/2026-03/indhold_å.csv"
MiB = 1024 * 1024
MIN_S3_PART = 5 * MiB


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _refused_status(url: str) -> int:
    with pytest.raises(urllib.error.HTTPError) as refused:
        _fetch(url)
    return refused.value.code


def _one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message
    return message


# --- both backends -----------------------------------------------------------------------------


def test_file_round_trip(store, tmp_path):
    content = "id;text\n1;Klimaet er på dagsordenen\n".encode()
    digest = hashlib.sha256(content).hexdigest()
    stored = store.put_file(CSV_KEY, _write(tmp_path / "content.csv", content), "text/csv", {"sha256": digest})

    assert (stored.key, stored.size, stored.metadata) == (CSV_KEY, len(content), {"sha256": digest})
    assert stored.content_type.startswith("text/csv")
    assert store.exists(CSV_KEY)
    with store.open(CSV_KEY) as body:
        assert body.read() == content
    downloaded = store.get_to_file(CSV_KEY, tmp_path / "down" / "copy.csv")
    assert downloaded.read_bytes() == content
    assert store.uri(CSV_KEY).endswith("/" + CSV_KEY)


def test_danish_letters_in_keys(store, tmp_path):
    content = "Æblegrød".encode()
    store.put_file(DANISH_KEY, _write(tmp_path / "x.csv", content))

    assert [found.key for found in store.list("exports/")] == [DANISH_KEY]
    with store.open(DANISH_KEY) as body:
        assert body.read() == content


def test_a_40_mb_stream_is_never_held_in_memory(request, store, tmp_path):
    if isinstance(store, S3ObjectStore):
        # The smallest part S3 allows, one upload at a time: the bound below is then far under the
        # object's size. Default settings hold (parallel uploads + 2) parts, whatever the size.
        store = open_s3_store(request.getfixturevalue("s3_server"), part_size=MIN_S3_PART, parallel_uploads=1)
        bound = 4 * MIN_S3_PART
    else:
        bound = 4 * MiB
    size = 40 * MiB
    source = tmp_path / "generated.bin"
    written = hashlib.sha256()
    with open(source, "wb") as out:
        for _ in range(size // MiB):
            chunk = os.urandom(MiB)
            written.update(chunk)
            out.write(chunk)

    tracemalloc.start()
    try:
        with open(source, "rb") as readable:
            stored = store.put_stream("exports/big/stream.bin", readable)
        upload_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read_back = hashlib.sha256()
        with store.open("exports/big/stream.bin") as body:
            while chunk := body.read(MiB):
                read_back.update(chunk)
        download_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert stored.size == size
    assert read_back.hexdigest() == written.hexdigest()
    assert upload_peak < bound <= size // 2, f"upload peaked at {upload_peak / MiB:.1f} MiB"
    assert download_peak < 8 * MiB, f"download peaked at {download_peak / MiB:.1f} MiB"


def test_a_stream_shorter_than_its_length_is_refused(store):
    with pytest.raises(StorageError, match="ended"):
        store.put_stream("exports/short.bin", _BytesReader(b"x" * 10), length=100)
    assert not store.exists("exports/short.bin")


class _BytesReader:
    """A readable that is not a file, as a generated export would be."""

    def __init__(self, content: bytes):
        self._content = content

    def read(self, size: int = -1) -> bytes:
        size = len(self._content) if size < 0 else size
        chunk, self._content = self._content[:size], self._content[size:]
        return chunk


def test_listing_by_prefix(store):
    keys = [
        "exports/forsker/klimadebat/2026-03/content.csv",
        "exports/forsker/klimadebat/2026-03/content.parquet",
        "exports/forsker/klimadebat/2026-04/content.csv",
        "exports/forsker/klimadebatten/2026-03/content.csv",
        "exports/anden/valg/2026-03/content.csv",
        "postgres/2026/03/01/observatory.sql.gz",
    ]
    for key in keys:
        store.put_stream(key, _BytesReader(key.encode()), content_type="text/plain", metadata={"origin": "test"})

    def listed(prefix):
        return [found.key for found in store.list(prefix)]

    assert listed("exports/forsker/klimadebat/") == keys[:3]
    assert listed("exports/forsker/klimadebat") == keys[:4]  # a prefix, not a folder, as in S3
    assert listed("exports/forsker/klimadebat/2026-03/content.c") == keys[:1]
    assert listed("") == sorted(keys)
    assert listed("nothing/") == []
    entry = next(store.list("postgres/"))
    assert (entry.size, entry.metadata) == (len(keys[-1]), None)  # listings carry no metadata; stat does


def test_stat_metadata_and_replacement(store):
    store.put_stream(CSV_KEY, _BytesReader(b"one"), content_type="text/csv", metadata={"sha256": "a" * 64, "rows": "1"})
    store.put_stream(CSV_KEY, _BytesReader(b"two!"), content_type="text/csv", metadata={"sha256": "b" * 64})

    stat = store.stat(CSV_KEY)
    assert (stat.size, stat.metadata) == (4, {"sha256": "b" * 64})
    assert stat.last_modified.tzinfo is not None
    with pytest.raises(ObjectNotFound, match="no object"):
        store.stat("exports/missing.csv")
    with pytest.raises(ObjectNotFound):
        store.open("exports/missing.csv")
    assert not store.exists("exports/missing.csv")


def test_delete(store):
    store.put_stream(CSV_KEY, _BytesReader(b"x"))
    store.put_stream("exports/other.csv", _BytesReader(b"y"))

    store.delete(CSV_KEY)
    store.delete(CSV_KEY)  # absent: not an error, as in S3

    assert not store.exists(CSV_KEY)
    assert [found.key for found in store.list()] == ["exports/other.csv"]


BAD_KEYS = [
    "../x",
    "exports/../../x",
    "/abs",
    "a//b",
    "a/",
    "a\\b",
    "..",
    "./a",
    "a/./b",
    ".meta/x.json",
    "a b",
    "",
    "x" * 1025,
    "s\u00f8ren".replace("\u00f8", "o\u0338"),  # ø decomposed (NFD): looks the same, is another key
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused_everywhere(store, key, tmp_path):
    source = _write(tmp_path / "f", b"x")
    for attempt in (
        lambda: store.put_file(key, source),
        lambda: store.put_stream(key, _BytesReader(b"x")),
        lambda: store.stat(key),
        lambda: store.open(key),
        lambda: store.delete(key),
        lambda: store.url(key),
        lambda: store.uri(key),
    ):
        with pytest.raises(ValueError):
            attempt()
    assert list(store.list()) == []


@pytest.mark.parametrize("metadata", [{"Bad Name": "x"}, {"note": "på dansk"}, {"note": "a\nb"}, {"big": "x" * 3000}])
def test_metadata_that_s3_headers_cannot_carry_is_refused(store, metadata):
    with pytest.raises(ValueError):
        store.put_stream(CSV_KEY, _BytesReader(b"x"), metadata=metadata)
    assert not store.exists(CSV_KEY)


def test_links_last_at_most_an_hour(store):
    store.put_stream(CSV_KEY, _BytesReader(b"x"))
    assert store.url(CSV_KEY, timedelta(hours=1))
    for expires in (timedelta(hours=1, seconds=1), timedelta(days=7), timedelta(0)):
        with pytest.raises(ValueError, match="1 hour|1:00:00"):
            store.url(CSV_KEY, expires)
    with pytest.raises(ObjectNotFound):
        store.url("exports/missing.csv")


# --- local folder ------------------------------------------------------------------------------


def test_local_store_never_leaves_its_folder(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    (store.root / "link").symlink_to(outside)

    with pytest.raises(StorageError, match="outside"):
        store.put_stream("link/planted.txt", _BytesReader(b"x"))
    with pytest.raises(StorageError, match="outside"):
        store.stat("link/secret.txt")
    with pytest.raises(ValueError):
        store.put_stream("../outside/planted.txt", _BytesReader(b"x"))
    assert sorted(path.name for path in outside.iterdir()) == ["secret.txt"]
    assert list(store.list()) == list(store.list("link/")) == []


def test_local_store_layout_is_plain_files(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    store.put_stream(CSV_KEY, _BytesReader(b"a;b\n"), content_type="text/csv", metadata={"sha256": "c" * 64})

    assert (store.root / CSV_KEY).read_bytes() == b"a;b\n"
    assert [found.key for found in store.list()] == [CSV_KEY]  # neither .meta nor .tmp
    assert list((store.root / ".tmp").iterdir()) == []
    url = store.url(CSV_KEY)
    assert url.startswith("file:///") and _fetch(url) == b"a;b\n"

    store.delete(CSV_KEY)
    assert [path.name for path in store.root.iterdir() if not path.name.startswith(".")] == []  # emptied folders go


def test_local_store_cannot_put_a_key_below_another_key(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    store.put_stream("exports/a", _BytesReader(b"x"))
    with pytest.raises(StorageError) as refused:
        store.put_stream("exports/a/b", _BytesReader(b"y"))
    assert "exports/a/b" in _one_line(refused.value)
    with pytest.raises(StorageError) as refused:
        store.put_stream("exports", _BytesReader(b"z"))
    assert "below it" in _one_line(refused.value)

    # Keys that differ only by a suffix keep separate metadata.
    store.put_stream("exports/b", _BytesReader(b"1"), metadata={"n": "1"})
    store.put_stream("exports/b.json/c", _BytesReader(b"2"), metadata={"n": "2"})
    assert [store.stat(key).metadata for key in ("exports/b", "exports/b.json/c")] == [{"n": "1"}, {"n": "2"}]


# --- S3 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["secret", "access key"])
def test_s3_refuses_wrong_credentials_in_one_line_without_the_secret(s3_server, which):
    wrong_secret = "wrong-" + s3_server.secret_key[::-1]
    access_key, secret_key = (
        (s3_server.access_key, wrong_secret) if which == "secret" else ("nobody", s3_server.secret_key)
    )
    with pytest.raises(CredentialsRefused) as refused:
        S3ObjectStore(s3_server.endpoint, access_key, secret_key, bucket=new_bucket())

    assert _one_line(refused.value) == (
        f"S3 at {s3_server.endpoint} refused the credentials (check MINIO_ACCESS_KEY / MINIO_SECRET_KEY)"
    )
    everything_printed = "".join(traceback.format_exception(refused.value))
    assert wrong_secret not in everything_printed and s3_server.secret_key not in everything_printed


def test_s3_store_shows_no_secret(s3_store, s3_server):
    store = s3_store
    store.put_stream(CSV_KEY, _BytesReader(b"x"))
    shown = [repr(store), store.describe(), store.uri(CSV_KEY), store.url(CSV_KEY)]
    assert not any(s3_server.secret_key in text for text in shown)
    assert store.uri(CSV_KEY) == f"s3://{store.bucket}/{CSV_KEY}"


def test_presigned_link_downloads_the_same_bytes(s3_store, tmp_path):
    content = os.urandom(3 * MiB)
    s3_store.put_file(CSV_KEY, _write(tmp_path / "c.csv", content), "text/csv")
    s3_store.put_stream(DANISH_KEY, _BytesReader(b"ost"))

    url = s3_store.url(CSV_KEY, timedelta(minutes=5))
    assert urlsplit(url).hostname == "127.0.0.1"
    assert _fetch(url) == content
    assert _fetch(s3_store.url(DANISH_KEY)) == b"ost"


def test_links_name_the_public_endpoint_when_one_is_set(isolated_settings, s3_server):
    # As behind Docker: the pipeline reaches S3 at one name, browsers at another.
    port = s3_server.endpoint.rsplit(":", 1)[1]
    isolated_settings.setenv("MINIO_ENDPOINT", s3_server.endpoint)
    isolated_settings.setenv("MINIO_PUBLIC_ENDPOINT", f"http://localhost:{port}")
    isolated_settings.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
    isolated_settings.setenv("MINIO_SECRET_KEY", s3_server.secret_key)
    isolated_settings.setenv("MINIO_BUCKET", new_bucket())
    store = store_from_env()
    store.put_stream(DANISH_KEY, _BytesReader("rødgrød med fløde".encode()))

    url = store.url(DANISH_KEY)
    assert urlsplit(url).netloc == f"localhost:{port}"
    assert _fetch(url) == "rødgrød med fløde".encode()
    isolated_settings.setenv("MINIO_PUBLIC_ENDPOINT", "localhost:9000/sti")
    with pytest.raises(ConfigError, match="MINIO_PUBLIC_ENDPOINT must be host:port"):
        store_from_env()


def test_expired_link_is_refused(s3_store):
    s3_store.put_stream(CSV_KEY, _BytesReader(b"x"))
    url = s3_store.url(CSV_KEY, timedelta(seconds=1))
    time.sleep(2.5)
    assert _refused_status(url) == 403


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_tampered_links_are_refused(s3_store):
    s3_store.put_stream(CSV_KEY, _BytesReader(b"mine"))
    s3_store.put_stream("exports/forsker/klimadebat/2026-03/other.csv", _BytesReader(b"not granted"))
    url = s3_store.url(CSV_KEY)
    assert _fetch(url) == b"mine"
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]

    assert _refused_status(_with_query(url, **{"X-Amz-Signature": flipped})) == 403
    assert _refused_status(url.replace("/content.csv?", "/other.csv?")) == 403
    assert _refused_status(_with_query(url, **{"X-Amz-Expires": "3600"})) == 403


def test_unreachable_endpoint_fails_in_one_line(s3_server):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as unreachable:
        S3ObjectStore(f"127.0.0.1:{port}", "key", "secret-value", bucket=new_bucket())
    message = _one_line(unreachable.value)
    assert f"127.0.0.1:{port}" in message and "secret-value" not in message
    assert time.monotonic() - started < 10


def test_missing_bucket_is_created_and_bad_names_refused(s3_server):
    bucket = new_bucket()
    open_s3_store(s3_server, bucket=bucket)
    open_s3_store(s3_server, bucket=bucket)  # already there: fine
    with pytest.raises(ConfigError, match="MINIO_BUCKET 'Bad_Bucket'"):
        open_s3_store(s3_server, bucket="Bad_Bucket")


# --- configuration -----------------------------------------------------------------------------


def test_without_an_endpoint_the_store_is_a_local_folder(isolated_settings, tmp_path):
    assert store_from_env().root == (tmp_path / "home" / "objects").resolve()
    isolated_settings.setenv("OBSERVATORY_STORAGE_DIR", str(tmp_path / "elsewhere"))
    assert store_from_env().root == (tmp_path / "elsewhere").resolve()


def test_s3_from_the_environment(isolated_settings, s3_server):
    bucket = new_bucket()
    isolated_settings.setenv("MINIO_ENDPOINT", s3_server.url)  # a URL: http means not secure
    isolated_settings.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
    isolated_settings.setenv("MINIO_SECRET_KEY", s3_server.secret_key)
    isolated_settings.setenv("MINIO_BUCKET", bucket)
    store = store_from_env()
    assert (store.endpoint, store.bucket, store.secure) == (s3_server.endpoint, bucket, False)
    store.put_stream(CSV_KEY, _BytesReader(b"x"))

    # The original system's variable names still work.
    for name in ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        isolated_settings.delenv(name)
    isolated_settings.setenv("MINIO_ENDPOINT", s3_server.endpoint)
    isolated_settings.setenv("MINIO_SECURE", "no")
    isolated_settings.setenv("MINIO_ROOT_USER", s3_server.access_key)
    isolated_settings.setenv("MINIO_ROOT_PASSWORD", s3_server.secret_key)
    assert store_from_env().exists(CSV_KEY)

    isolated_settings.delenv("MINIO_BUCKET")
    assert store_from_env().bucket == "observatory"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {
                "MINIO_ENDPOINT": "127.0.0.1:9",
                "MINIO_SECURE": "maybe",
                "MINIO_ACCESS_KEY": "k",
                "MINIO_SECRET_KEY": "s",
            },
            "MINIO_SECURE must be true or false",
        ),
        (
            {
                "MINIO_ENDPOINT": "https://127.0.0.1:9",
                "MINIO_SECURE": "false",
                "MINIO_ACCESS_KEY": "k",
                "MINIO_SECRET_KEY": "s",
            },
            "make them agree",
        ),
        ({"MINIO_ENDPOINT": "127.0.0.1:9"}, "needs credentials"),
        ({"MINIO_ENDPOINT": "127.0.0.1:9", "MINIO_ACCESS_KEY": "k"}, "needs credentials"),
        ({"MINIO_ENDPOINT": "http://127.0.0.1:9/bucket"}, "cannot have a path"),
        ({"MINIO_ENDPOINT": "ftp://127.0.0.1:9"}, "host:port or http"),
    ],
)
def test_storage_configuration_errors(isolated_settings, variables, expected):
    for name, value in variables.items():
        isolated_settings.setenv(name, value)
    with pytest.raises(ConfigError, match=expected) as refused:
        store_from_env()
    _one_line(refused.value)


def test_credentials_in_the_endpoint_are_refused_without_echoing_them(isolated_settings):
    isolated_settings.setenv("MINIO_ENDPOINT", "http://admin:hunter2@127.0.0.1:9")
    with pytest.raises(ConfigError) as refused:
        store_from_env()
    assert "hunter2" not in str(refused.value)


def test_storage_resource(isolated_settings, s3_server, tmp_path):
    local = StorageResource(local_dir=str(tmp_path / "exports")).store()
    assert local.root == (tmp_path / "exports").resolve()

    isolated_settings.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
    isolated_settings.setenv("MINIO_SECRET_KEY", s3_server.secret_key)
    remote = StorageResource(endpoint=s3_server.endpoint, bucket=new_bucket()).store()
    remote.put_stream(CSV_KEY, _BytesReader(b"x"))
    assert remote.exists(CSV_KEY)

    # The project binds the credential fields to their variables (dg.EnvVar): run config and the UI
    # name the variable and never hold the value.
    bound = resources.from_environment()["storage"]
    assert (bound.access_key, bound.secret_key) == (dg.EnvVar("MINIO_ACCESS_KEY"), dg.EnvVar("MINIO_SECRET_KEY"))
    assert s3_server.secret_key not in repr(bound)
    with pytest.raises(ConfigError, match="either a local folder or an S3"):
        StorageResource(local_dir=str(tmp_path), endpoint=s3_server.endpoint).store()


def test_a_run_using_the_resource_records_no_secret(isolated_settings, s3_server, instance):
    isolated_settings.setenv("MINIO_ACCESS_KEY", s3_server.access_key)
    isolated_settings.setenv("MINIO_SECRET_KEY", s3_server.secret_key)

    @dg.asset
    def uploaded(storage: StorageResource) -> dg.MaterializeResult:
        store = storage.store()
        stored = store.put_stream(CSV_KEY, _BytesReader(b"a;b\n"), content_type="text/csv")
        return dg.MaterializeResult(
            metadata={"uri": store.uri(CSV_KEY), "store": store.describe(), "bytes": stored.size}
        )

    resource = StorageResource(endpoint=s3_server.endpoint, bucket=new_bucket())
    result = dg.materialize([uploaded], resources={"storage": resource}, instance=instance)

    assert result.success
    recorded = dg.serialize_value(instance.all_logs(result.run_id)) + str(instance.get_run_by_id(result.run_id))
    assert f"s3://{resource.bucket}/{CSV_KEY}" in recorded
    assert s3_server.secret_key not in recorded
