"""`tritongen build`'s overload options on the command line: into config.pbtxt as Triton reads it, and one-line errors
before any work."""

from __future__ import annotations

import pytest

from tests.conftest import CNN_ARGS
from tritongen.config import read_config


def test_queue_options_need_batching_and_fail_before_any_work(cli, cnn_checkpoint, tmp_path):
    repository = tmp_path / "model_repository"
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repository, "--max-batch-size", "0",
                 "--max-queue-size", "8")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "--max-queue-size needs batching" in result.stderr and not repository.exists()


@pytest.mark.slow
def test_queue_policy_priorities_and_cache_reach_the_config(cli, cnn_checkpoint, tmp_path):
    repository = tmp_path / "model_repository"
    result = cli("build", cnn_checkpoint, *CNN_ARGS, "--repository", repository, "--format", "python",
                 "--max-queue-size", "8", "--queue-timeout-us", "50000", "--timeout-action", "delay",
                 "--priority-levels", "2", "--response-cache", "--allow-timeout-override")
    assert result.exit_code == 0, result.stderr
    config = read_config(repository / "cnn" / "config.pbtxt")
    batching = config.dynamic_batching
    policy = batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds, policy.allow_timeout_override) == (8, 50000, True)
    assert policy.timeout_action == policy.DELAY
    assert (batching.priority_levels, batching.default_priority_level) == (2, 2)
    assert config.response_cache.enable
    # No --instances: two, since with a queue policy one instance stalls Triton's batcher; the build says so.
    assert config.instance_group[0].count == 2 and "2 instances (not 1)" in result.stderr
