"""`--models-from` and `--credentials-secret`: the forms accepted, what KServe gets, and one-line errors."""

from __future__ import annotations

import pytest

from tritongen.errors import TritongenError
from tritongen.kube.source import ModelSource, check_name, name_from, parse_source


@pytest.mark.parametrize(("text", "secret", "expected", "kserve"), [
    (None, None, ModelSource("pvc", "triton-cnn-models"), "pvc://triton-cnn-models"),
    ("pvc:models/zoo/v2", None, ModelSource("pvc", "models", "zoo/v2"), "pvc://models/zoo/v2"),
    ("image:reg.example.com/m:1", None, ModelSource("image", "reg.example.com/m:1"), "oci://reg.example.com/m:1"),
    ("s3://bucket/repo/", "creds", ModelSource("s3", "s3://bucket/repo", secret="creds"), "s3://bucket/repo"),
    ("s3://minio:9000/bucket/repo", None, ModelSource("s3", "s3://minio:9000/bucket/repo"), "s3://minio:9000/bucket/repo"),
    ("gs://bucket/repo", "gcs.creds", ModelSource("gs", "gs://bucket/repo", secret="gcs.creds"), "gs://bucket/repo"),
])
def test_sources(text, secret, expected, kserve):
    source = parse_source(text, "triton-cnn", secret)
    assert source == expected and source.kserve_uri() == kserve
    assert source.object_store == (expected.kind in ("s3", "gs"))


@pytest.mark.parametrize(("text", "secret", "match"), [
    ("http://example.com/repo", None, "is not a model repository location; use pvc:CLAIM"),
    ("s3://", None, "names no bucket"), ("gs:///path", None, "names no bucket"),
    ("pvc:Bad_Name", None, "not a valid PersistentVolumeClaim name"), ("image:", None, "not a model repository"),
    ("pvc:models", "creds", "--credentials-secret is for object stores"),
    ("s3://b/r", "Not A Name", "not a valid Secret name"),
])
def test_bad_sources_are_one_line_errors(text, secret, match):
    with pytest.raises(TritongenError, match=match) as info:
        parse_source(text, "app", secret)
    assert "\n" not in info.value.one_line() and info.value.hint


def test_describe_says_where_credentials_come_from():
    assert "Secret 'creds'" in parse_source("s3://b/r", "a", "creds").describe()
    assert "no credentials Secret" in parse_source("gs://b/r", "a").describe()


def test_names():
    assert name_from("My_Model.v2") == "triton-my-model-v2"
    assert len(name_from("x" * 100)) <= 63
    assert check_name("triton-cnn") == "triton-cnn"
    for bad in ("Triton", "9lives", "a" * 64, "triton_cnn", "-x"):
        with pytest.raises(TritongenError, match="not a valid Kubernetes name"):
            check_name(bad)
