"""The storage seam: the folder store, the S3 store (moto), the registry, the one
quarantine writer and the write-once rule for instances."""

from __future__ import annotations

import json
import os
import threading

import boto3
import pytest
from moto import mock_aws

from src.errors import ConfigurationError
from src.storage import s3_store
from src.storage.folder_store import FolderStore
from src.storage.store import (
    DuplicateInstanceError,
    ObjectExistsError,
    QuarantineRecord,
    Store,
    commit_instance,
    open_store,
    quarantine_keys,
    register_store,
)


@pytest.fixture()
def s3():  # type: ignore[no-untyped-def]
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="bucket")
        yield client


def _stores(tmp_path, s3):  # type: ignore[no-untyped-def]
    return [open_store(str(tmp_path / "folder")), open_store("s3://bucket/pre", s3_client=s3)]


def test_registry_picks_the_backend_by_scheme_and_names_what_is_missing(tmp_path, s3):
    folder, bucket = _stores(tmp_path, s3)
    assert isinstance(folder, FolderStore) and isinstance(folder, Store)
    assert isinstance(bucket, s3_store.S3Store) and bucket.prefix == "pre"
    with pytest.raises(ConfigurationError, match="no storage back-end for ftp"):
        open_store("ftp://host/x")
    register_store("gone", "src.storage.no_such_module:Nope", "medpipe-gone")
    with pytest.raises(ConfigurationError, match="install medpipe-gone"):
        open_store("gone://x")


def test_put_list_open_exists_round_trip_in_both_stores(tmp_path, s3):
    for store in _stores(tmp_path, s3):
        store.put("a/b/c.dcm", b"one")
        src = tmp_path / "src.bin"
        src.write_bytes(b"two" * 1000)
        store.put("a/d.bin", str(src))
        assert store.exists("a/b/c.dcm") and not store.exists("a/none")
        assert [(o.key, o.size) for o in store.list()] == [("a/b/c.dcm", 3), ("a/d.bin", 3000)]
        with store.open("a/d.bin") as fh:
            assert fh.read() == b"two" * 1000
        store.fetch("a/b/c.dcm", str(tmp_path / "fetched"))
        assert (tmp_path / "fetched").read_bytes() == b"one"


def test_if_absent_refuses_a_second_writer_and_reports_the_owner(tmp_path, s3):
    for store in _stores(tmp_path, s3):
        store.put("k.dcm", b"first", if_absent=True, owner="id-1")
        with pytest.raises(ObjectExistsError) as info:
            store.put("k.dcm", b"second", if_absent=True, owner="id-2")
        if isinstance(store, s3_store.S3Store):
            assert info.value.owner == "id-1"
        with store.open("k.dcm") as fh:
            assert fh.read() == b"first"


def test_commit_instance_is_idempotent_for_the_owner_and_refuses_others(tmp_path, s3):
    staged = tmp_path / "staged.dcm"
    staged.write_bytes(b"DICM")
    bucket = open_store("s3://bucket", s3_client=s3)
    assert commit_instance(bucket, "p/s/e/i.dcm", str(staged), "owner", claimed=False)
    assert not commit_instance(bucket, "p/s/e/i.dcm", str(staged), "owner", claimed=False)
    with pytest.raises(DuplicateInstanceError):
        commit_instance(bucket, "p/s/e/i.dcm", str(staged), "someone-else", claimed=False)
    staged.write_bytes(b"DICM2")  # a changed input replaces its own output
    commit_instance(bucket, "p/s/e/i.dcm", str(staged), "owner", claimed=True)
    assert s3.get_object(Bucket="bucket", Key="p/s/e/i.dcm")["Body"].read() == b"DICM2"


def test_quarantine_holds_the_original_bytes_and_a_reason(tmp_path, s3):
    original = tmp_path / "orig.bin"
    original.write_bytes(b"\x00raw bytes\xff" * 10)
    record = QuarantineRecord("abc", "truncated", "unexpected end", "parse", "Doe/John.dcm")
    for store in _stores(tmp_path, s3):
        store.quarantine(record, str(original))
        data_key, reason_key = quarantine_keys("abc")
        with store.open(data_key) as fh:
            assert fh.read() == original.read_bytes()
        with store.open(reason_key) as fh:
            reason = json.loads(fh.read())
        assert reason == {**record.__dict__, "copied": True}
    store = open_store(str(tmp_path / "other"))
    store.quarantine(record, None)
    with store.open("quarantine/abc.reason.json") as fh:
        assert json.loads(fh.read())["copied"] is False
    assert not store.exists("quarantine/abc.bin")


def test_folder_store_keys_cannot_escape_and_writes_leave_no_temp_files(tmp_path):
    store = FolderStore(str(tmp_path / "root"))
    for bad in ("../x", "a/../../x", "", "a//b", "/abs"):
        with pytest.raises(ValueError):
            store.put(bad, b"x")
    store.put("a/b", b"x")
    assert sorted(os.listdir(tmp_path / "root" / "a")) == ["b"]


def test_folder_store_if_absent_has_one_winner_under_contention(tmp_path):
    store = FolderStore(str(tmp_path / "root"))
    wins, errors = [], []

    def writer(i: int) -> None:
        try:
            store.put("same.dcm", f"{i}".encode() * 100, if_absent=True, owner=str(i))
            wins.append(i)
        except ObjectExistsError:
            errors.append(i)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(errors) == 15
    assert (tmp_path / "root" / "same.dcm").read_bytes() == f"{wins[0]}".encode() * 100


def test_s3_store_multipart_above_the_threshold_is_conditional_too(tmp_path, s3, monkeypatch):
    monkeypatch.setattr(s3_store, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(s3_store, "PART_SIZE", 5 * 1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * 1024 * 1024))
    store = open_store("s3://bucket", s3_client=s3)
    store.put("big.bin", str(big), if_absent=True, owner="o")
    assert s3.head_object(Bucket="bucket", Key="big.bin")["ContentLength"] == 11 * 1024 * 1024
    with pytest.raises(ObjectExistsError):
        store.put("big.bin", str(big), if_absent=True, owner="p")
    assert s3.list_multipart_uploads(Bucket="bucket").get("Uploads", []) == []


def test_s3_store_sends_no_encryption_header_unless_given_a_key(s3):
    sent = []
    s3.meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: sent.append(dict(params))
    )
    open_store("s3://bucket", s3_client=s3).put("x", b"1")
    open_store("s3://bucket", s3_client=s3, kms_key_id="arn:aws:kms:us-east-1:1:key/k").put(
        "y", b"1"
    )
    assert len(sent) == 2, sent
    assert "ServerSideEncryption" not in sent[0]  # the bucket's default (SSE-KMS) applies
    assert sent[1]["ServerSideEncryption"] == "aws:kms" and sent[1]["BucketKeyEnabled"] is True
