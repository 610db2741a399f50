"""Writing a tuned config back: rendered like `build`, every previous config kept, and nothing written that
contradicts the ONNX graph. Needs a built model (its graph and manifest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritongen.config import parse_config
from tritongen.errors import TritongenError
from tritongen.tune import TrialConfig, write_tuned_config

pytestmark = pytest.mark.slow


def test_write_back_renders_like_build_and_keeps_every_previous_config(repository: Path) -> None:
    path = repository / "cnn" / "config.pbtxt"
    original = path.read_text()
    tuned = TrialConfig(instances=2, max_batch_size=16, max_queue_delay_us=500, preferred_batch_sizes=(8, 16),
                        intra_op_threads=1)
    written, backup = write_tuned_config(repository / "cnn", tuned, note="test")
    assert written == path and backup.read_text() == original
    text = path.read_text()
    # Rendered through the template: build's comments and layout, only the tuned values differ.
    assert "dims: [ 3, 32, 32 ]" in text and "# Runs once at load" in text
    assert "count: 2" in text and "max_batch_size: 16" in text and "preferred_batch_size: [ 8, 16 ]" in text
    assert 'key: "intra_op_thread_count"' in text
    assert TrialConfig.of(parse_config(text)) == tuned
    again, second_backup = write_tuned_config(repository / "cnn", TrialConfig(1, 32, 100))
    assert second_backup != backup and second_backup.read_text() == text
    assert parse_config(path.read_text()) == parse_config(original)


def test_a_config_that_contradicts_the_graph_is_not_written(repository: Path) -> None:
    path = repository / "cnn" / "config.pbtxt"
    original = path.read_text()
    with pytest.raises(TritongenError, match="preferred batch size 64 > max_batch_size 32|--preferred-batch-size 64"):
        write_tuned_config(repository / "cnn", TrialConfig(1, 32, 100, (64,)))
    assert path.read_text() == original
    assert sorted(p.name for p in (repository / "cnn").iterdir()) == ["1", "config.pbtxt"]


def test_write_back_keeps_the_overload_settings_and_the_response_cache(repository: Path) -> None:
    from google.protobuf import text_format

    path = repository / "cnn" / "config.pbtxt"
    config = parse_config(path.read_text())
    policy = config.dynamic_batching.default_queue_policy
    policy.max_queue_size, policy.default_timeout_microseconds = 8, 200_000
    config.dynamic_batching.priority_levels = config.dynamic_batching.default_priority_level = 2
    config.response_cache.enable = True
    path.write_text(text_format.MessageToString(config))
    write_tuned_config(repository / "cnn", TrialConfig(2, 32, 500))
    text = path.read_text()
    written = parse_config(text)
    assert written.dynamic_batching.default_queue_policy == policy and written.response_cache.enable
    assert written.dynamic_batching.priority_levels == 2 and TrialConfig.of(written) == TrialConfig(2, 32, 500)
    # Rendered through build's template, with its comments, not protobuf's bare text.
    assert "# Overload protection" in text and "# Requests may carry a priority" in text
    assert "# Identical requests are answered from Triton's response cache" in text
