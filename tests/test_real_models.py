"""Real models in (issue 12): tiny Hugging Face models from save_pretrained folders, a DistilBERT .pt2 exported with
keyword inputs, and safetensors weights with --model-class, each built and then validated on the embedded Triton."""

from __future__ import annotations

import pytest

from tests.conftest import HF_BUILDS, HfBuilds
from tritongen.validate import ValidationReport, validate_repository

pytestmark = [pytest.mark.slow, pytest.mark.server]


@pytest.fixture(scope="module")
def validation(hf_builds: HfBuilds) -> ValidationReport:
    return validate_repository(hf_builds.repository, server="embedded")


@pytest.mark.parametrize("name", list(HF_BUILDS))
def test_every_model_passes_validate(validation: ValidationReport, name: str) -> None:
    model = next(m for m in validation.models if m.name == name)
    assert model.passed, model.failures()
    assert model.http.passed and model.grpc.passed and model.batching.passed
    assert model.bad_requests and all(b.passed for b in model.bad_requests)
