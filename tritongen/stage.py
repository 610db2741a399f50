"""Moved to `tritongen.server.stage` (staging is part of serving); kept so that older imports keep working."""

from tritongen.server.stage import (
    PYTHON_RUNNER,
    StagedModel,
    StagedRepository,
    backend_of,
    read_config,
    select_models,
    served_by,
    stage_repository,
    staged_repository,
)

__all__ = ["PYTHON_RUNNER", "StagedModel", "StagedRepository", "backend_of", "read_config", "select_models",
           "served_by", "stage_repository", "staged_repository"]
