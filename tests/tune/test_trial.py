"""The settings tune searches, read from and applied to a config, and which configs are the same to the server."""

from __future__ import annotations

from pathlib import Path

from tritongen.config import parse_config
from tritongen.tune import TrialConfig


def test_trial_settings_round_trip_through_a_config(configs: Path) -> None:
    config = parse_config((configs / "cnn" / "config.pbtxt").read_text())
    start = TrialConfig.of(config)
    assert start == TrialConfig(instances=1, max_batch_size=32, max_queue_delay_us=100, preferred_batch_sizes=())
    tuned = TrialConfig(instances=3, max_batch_size=16, max_queue_delay_us=2000, preferred_batch_sizes=(8, 16))
    assert TrialConfig.of(tuned.apply(config)) == tuned
    assert TrialConfig.of(config) == start  # apply() works on a copy
    # Threads go where both runtimes read them: tritongen's python runner and Triton's onnxruntime backend.
    threads = TrialConfig(1, 32, 100, (), intra_op_threads=1).apply(config)
    assert {k: v.string_value for k, v in threads.parameters.items()} == {"intra_op_num_threads": "1",
                                                                          "intra_op_thread_count": "1"}
    assert TrialConfig.of(threads).intra_op_threads == 1
    assert not TrialConfig(1, 32, 100).apply(threads).parameters  # back to the server's default
    off = TrialConfig(1, 32, None).apply(config)
    assert not off.HasField("dynamic_batching") and off.input == config.input and off.model_warmup == config.model_warmup


def test_a_python_model_gets_only_the_key_its_runner_reads(configs: Path) -> None:
    config = parse_config((configs / "fcn" / "config.pbtxt").read_text())
    applied = TrialConfig(2, 4, 500, (2, 4), intra_op_threads=1).apply(config)
    assert {k: v.string_value for k, v in applied.parameters.items()} == {"intra_op_num_threads": "1"}
    assert [g.count for g in applied.instance_group] == [2]
    assert applied.max_batch_size == 4 and list(applied.dynamic_batching.preferred_batch_size) == [2, 4]
    # The warmup batch must fit the new max batch size, or the load would fail.
    config.model_warmup[0].batch_size = 8
    assert TrialConfig(1, 4, 100).apply(config).model_warmup[0].batch_size == 4


def test_a_thread_count_the_runner_picks_itself_is_the_same_config() -> None:
    # On 2 CPUs the python runner gives 1 instance 2 threads and 2 instances 1 thread each, when none are set.
    same = TrialConfig(1, 32, 100, (), intra_op_threads=2)
    assert same.same_as_default_threads(lambda n: 2 // n) == TrialConfig(1, 32, 100)
    assert TrialConfig(2, 32, 100, (), 2).same_as_default_threads(lambda n: 2 // n).intra_op_threads == 2
    assert same.same_as_default_threads(None) == same
    assert "delay 100 µs" in TrialConfig(1, 32, 100).describe()
    assert "no dynamic batching" in TrialConfig(1, 32, None).describe()


def test_a_trial_keeps_the_overload_settings_and_runs_without_the_response_cache(configs: Path) -> None:
    from tritongen.bench import LoadSettings, make_workload
    from tritongen.bench.workload import model_spec
    from tritongen.tune import ServerMeasure

    config = parse_config((configs / "cnn" / "config.pbtxt").read_text())
    config.dynamic_batching.default_queue_policy.max_queue_size = 8
    config.dynamic_batching.priority_levels = 2
    config.dynamic_batching.default_priority_level = 2
    config.response_cache.enable = True
    applied = TrialConfig(2, 16, 500).apply(config)
    assert applied.dynamic_batching.default_queue_policy == config.dynamic_batching.default_queue_policy
    assert applied.dynamic_batching.priority_levels == 2 and applied.response_cache.enable
    measure = ServerMeasure("127.0.0.1:1", "127.0.0.1:1", "cnn", config,
                            make_workload("cnn", model_spec(None, config), 1), LoadSettings(), (1,), None)
    try:
        trial = measure.config_for(TrialConfig(2, 16, 500))
    finally:
        measure.close()
    # Every request of a trial is the same: with the cache on it would measure cache hits.
    assert not trial.HasField("response_cache") and trial.dynamic_batching.default_queue_policy.max_queue_size == 8
