"""The settings tune searches (`TrialConfig`), read from and applied to a Triton config proto."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

# Threads per instance: tritongen's python runner (model.py) reads the first key, Triton's onnxruntime backend the
# second. An ONNX config gets both, so the setting means the same on the embedded server and on a full Triton.
THREAD_KEYS = ("intra_op_num_threads", "intra_op_thread_count")


@dataclass(frozen=True)
class TrialConfig:
    """The settings tune searches; everything else in the config stays as the user wrote it."""

    instances: int
    max_batch_size: int
    max_queue_delay_us: int | None  # None: no dynamic batching
    preferred_batch_sizes: tuple[int, ...] = ()
    intra_op_threads: int | None = None  # ONNX Runtime threads per instance; None: the server's default

    @staticmethod
    def threads_of(config: Any) -> int | None:
        for key in THREAD_KEYS:
            value = config.parameters[key].string_value.strip() if key in config.parameters else ""
            if value.isdigit() and int(value) > 0:
                return int(value)
        return None

    @staticmethod
    def of(config: Any) -> TrialConfig:
        batching = config.dynamic_batching if config.HasField("dynamic_batching") else None
        # Triton's count is per group (one group per GPU, say); tune sets every group's count alike.
        instances = max(1, config.instance_group[0].count) if config.instance_group else 1
        return TrialConfig(instances, int(config.max_batch_size),
                           int(batching.max_queue_delay_microseconds) if batching is not None else None,
                           tuple(batching.preferred_batch_size) if batching is not None else (),
                           TrialConfig.threads_of(config))

    def apply(self, config: Any) -> Any:
        """A copy of `config` with these settings."""
        from tritonclient.grpc import model_config_pb2

        new = model_config_pb2.ModelConfig()
        new.CopyFrom(config)
        new.max_batch_size = self.max_batch_size
        if not new.instance_group:
            new.instance_group.add()
        for group in new.instance_group:
            group.count = self.instances
        if self.max_queue_delay_us is None:
            new.ClearField("dynamic_batching")
        else:
            new.dynamic_batching.max_queue_delay_microseconds = self.max_queue_delay_us
            del new.dynamic_batching.preferred_batch_size[:]
            new.dynamic_batching.preferred_batch_size.extend(self.preferred_batch_sizes)
        keys = THREAD_KEYS[:1] if new.backend == "python" else THREAD_KEYS
        for key in THREAD_KEYS:
            if key in new.parameters and (self.intra_op_threads is None or key not in keys):
                del new.parameters[key]
        if self.intra_op_threads is not None:
            for key in keys:
                new.parameters[key].string_value = str(self.intra_op_threads)
        for warmup in new.model_warmup:  # a warmup batch above the new max would fail the load
            if self.max_batch_size > 0 and warmup.batch_size > self.max_batch_size:
                warmup.batch_size = self.max_batch_size
        return new

    def same_as_default_threads(self, default_threads: Callable[[int], int] | None) -> TrialConfig:
        """This config, with an explicit thread count that equals the runner's own choice turned into None (default)."""
        if default_threads is None or self.intra_op_threads is None:
            return self
        if self.intra_op_threads != default_threads(self.instances):
            return self
        return replace(self, intra_op_threads=None)

    def describe(self) -> str:
        delay = "no dynamic batching" if self.max_queue_delay_us is None else f"delay {self.max_queue_delay_us} µs"
        preferred = ",".join(map(str, self.preferred_batch_sizes)) or "none"
        threads = f"{self.intra_op_threads} thr" if self.intra_op_threads else "default thr"
        return f"{self.instances} inst · {threads} · max batch {self.max_batch_size} · {delay} · preferred {preferred}"
