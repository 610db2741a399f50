"""The model-repository API's refusals, from a real Triton, as one-line errors that say what to do."""

from __future__ import annotations

import pytest

from tests.rollout.versions import MODEL
from tritongen.deploy.command import GRPC_ADMIN_HEADER
from tritongen.errors import TritongenError
from tritongen.rollout import ModelControl, rollout, rollout_flags

pytestmark = [pytest.mark.server, pytest.mark.slow]

KEY = "control-test-key-0123456789"


def test_restricted_api_refuses_a_missing_or_wrong_key_and_says_where_the_key_is(two_versions):
    from tritongen.server import serve

    with serve(two_versions, "embedded", flags=rollout_flags(KEY), every_version=True) as s:
        with ModelControl(s.handle.http_url, KEY) as control:
            assert control.ready_versions(MODEL) == [2]
        # gRPC is restricted the same way (--grpc-restricted-protocol), where Triton 2.51 expects the header with a
        # prefix of its own.
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(s.handle.grpc_url)
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_model_repository_index()
        assert client.get_model_repository_index(headers={GRPC_ADMIN_HEADER: KEY}).models
        assert client.is_model_ready(MODEL)  # inference and health stay open
        client.close()
        for key, hint in ((None, "--admin-key"), ("not-the-key", "not the one the server was started with")):
            with pytest.raises(TritongenError) as caught:
                rollout(two_versions, MODEL, 1, s.handle, key=key)
            assert "refused to list the models" in caught.value.message
            assert "restricted" in caught.value.message and hint in (caught.value.hint or "")
        with pytest.raises(TritongenError, match="already serves version 2"):
            rollout(two_versions, MODEL, 2, s.handle, key=KEY)
        with pytest.raises(TritongenError, match="has no version 7"):
            rollout(two_versions, MODEL, 7, s.handle, key=KEY)


def test_a_server_without_explicit_model_control_is_named_as_the_problem(two_versions):
    from tritongen.server import serve

    with serve(two_versions, "embedded") as s:
        with pytest.raises(TritongenError) as caught:
            rollout(two_versions, MODEL, 1, s.handle)
    assert "refused to load" in caught.value.message and "not allowed" in caught.value.message
    assert "explicit model control" in (caught.value.hint or ""), caught.value
