"""End-to-end parity of a pipeline, at build time: raw strings or images through the steps' own code and ONNX
Runtime, against transformers' pre-processing, the PyTorch model and the same post-processing.

Both run the same requests (of 1 item, a few, and the maximum batch), then the comparisons: what the network took
(token ids at every real position, or the pixel values) and the answers (labels equal; scores, logits and embeddings
within the tolerance). A difference fails the build with numbers. The raw inputs and the reference's answers are kept
for `validate`, with a reference for each step model too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.errors import CheckFailed
from tritongen.pipeline.design import PipelineDesign
from tritongen.pipeline.runners import Stages, StepsRunner, TransformersRunner, step_object, write_step_files
from tritongen.pipeline.samples import image_samples, text_samples
from tritongen.runners.base import Runner
from tritongen.verify import OutputParity, ParityReport, Tolerance, compare_outputs, merge

Reference = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]  # inputs, expected outputs


@dataclass(frozen=True)
class PipelineCheck:
    """What the end-to-end check found and made: the steps' files, the report, and reference data per model."""

    design: PipelineDesign
    folders: dict[str, Path]  # preprocess | postprocess -> step.json and its other files, as each version holds them
    report: ParityReport
    references: dict[str, Reference]  # model name -> reference data for `validate`
    notes: tuple[str, ...] = field(default_factory=tuple)


def raw_array(items: list[Any]) -> np.ndarray:
    """[batch, 1] bytes, as a client sends TYPE_STRING items."""
    array = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        array[i, 0] = item.encode("utf-8") if isinstance(item, str) else bytes(item)
    return array


def request_sizes(count: int, max_batch_size: int) -> list[int]:
    """Request sizes covering `count` items: 1, 2, 3, then the maximum batch (the last request takes the rest)."""
    sizes, left = [], count
    for size in (1, 2, 3):
        if left and size <= max_batch_size:
            sizes.append(min(size, left))
            left -= sizes[-1]
    while left:
        sizes.append(min(max_batch_size, left))
        left -= sizes[-1]
    return sizes


def check_pipeline(design: PipelineDesign, onnx_path: Path, model: Runner, fp32_dtypes: dict[str, Any],
                   tolerance: Tolerance, work_dir: Path, note: Callable[[str], None]) -> PipelineCheck:
    """Run the pipeline both ways on its samples and compare; raises CheckFailed with the numbers on a difference."""
    folders = {step.role: write_step_files(step, work_dir / step.role) for step in (design.preprocess, design.postprocess)}
    samples, notes = _samples(design, folders)
    for line in notes:
        note(line)
    sizes = request_sizes(len(samples), design.spec.max_batch_size)
    requests, start = [], 0
    for size in sizes:
        requests.append(raw_array(samples[start:start + size]))
        start += size
    with StepsRunner(design, folders, onnx_path) as ours, \
            TransformersRunner(design, model, fp32_dtypes, folders["postprocess"]) as reference:
        got = [ours.run(r) for r in requests]
        expected = [reference.run(r) for r in requests]
    outputs = _compare_features(design, requests, got, expected, tolerance)
    answers_got = {k: np.concatenate([s.answers[k] for s in got]) for k in got[0].answers}
    answers_expected = {k: np.concatenate([s.answers[k] for s in expected]) for k in expected[0].answers}
    outputs += list(compare_outputs(answers_got, answers_expected, tolerance.atol, tolerance.rtol).values())
    what = "strings" if design.kind == "text" else "images"
    report = ParityReport(f"{ours.name} vs {reference.name}", tolerance.atol, tolerance.rtol, tuple(outputs),
                          (f"{len(samples)} {what} in {len(requests)} requests of {min(sizes)} to {max(sizes)}",))
    if not report.passed:
        raise CheckFailed(f"the pipeline does not match transformers + PyTorch on {len(samples)} {what}: "
                          f"{report.failures()}",
                          "a tokenizer or image processor option tritongen does not reproduce, or a network that "
                          "differs from PyTorch: build without --pipeline to check the network alone")
    references = {design.name: (_raw_inputs(design, requests), answers_expected)}
    references.update(_step_references(design, folders, requests, expected))
    return PipelineCheck(design, folders, report, references, tuple(notes))


def _samples(design: PipelineDesign, folders: dict[str, Path]) -> tuple[list[Any], list[str]]:
    if design.kind == "image":
        return list(image_samples()), []
    samples = text_samples(int(design.preprocess.params["max_length"]))
    # A tokenizer that adds no special tokens gives the empty string no token at all: the step refuses it (a client
    # error), so it is not compared.
    pre = step_object(design.preprocess, folders["preprocess"])
    kept = [s for s in samples if pre.tokenizer.encode(s, add_special_tokens=True).ids]
    notes = [] if len(kept) == len(samples) else [
        f"{len(samples) - len(kept)} string(s) give no token with this tokenizer (the empty string: it adds no special "
        "tokens); the pipeline refuses them as a client error, so they are not compared"]
    return kept, notes


def _compare_features(design: PipelineDesign, requests: list[np.ndarray], got: list[Stages], expected: list[Stages],
                      tolerance: Tolerance) -> list[OutputParity]:
    """What the network took, ours against transformers': tokens at every real position, or pixel values."""
    if design.kind == "image":
        worst: OutputParity | None = None
        for ours, ref in zip(got, expected, strict=True):
            found = compare_outputs(ours.features, ref.features, tolerance.atol, tolerance.rtol)
            worst = merge(worst, next(iter(found.values())))
        assert worst is not None
        return [worst]
    outputs = []
    mask = next((n for n, kind in design.preprocess.params["outputs"].items() if kind == "mask"), None)
    for name in design.preprocess.params["outputs"]:
        items, wrong, first = 0, 0, ""
        for raw, ours, ref in zip(requests, got, expected, strict=True):
            for row in range(len(raw)):
                a, e = _real(ours.features, name, mask, row), _real(ref.features, name, mask, row)
                items += 1
                if a != e:
                    wrong += 1
                    first = first or (f"{raw[row, 0].decode('utf-8', 'replace')[:40]!r}: {a[:12]} vs transformers "
                                      f"{e[:12]}")
        outputs.append(OutputParity(f"{name} (pre-processing)", 0.0 if not wrong else float("inf"),
                                    wrong / max(items, 1), not wrong,
                                    f"{wrong} of {items} items differ (first {first})" if wrong else None))
    return outputs


def _real(features: dict[str, np.ndarray], name: str, mask: str | None, row: int) -> list[int]:
    values = features[name][row]
    if mask is not None and mask in features:
        values = values[features[mask][row] != 0]
    return [int(v) for v in values]


def _raw_inputs(design: PipelineDesign, requests: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {design.raw_input: np.concatenate(requests)}


def _step_references(design: PipelineDesign, folders: dict[str, Path], requests: list[np.ndarray],
                     expected: list[Stages]) -> dict[str, Reference]:
    """A reference for each step: the pre-processing on items that pad to one length (so that each of them sent alone
    comes back with the batch's shape), the post-processing on the reference network's outputs of the largest
    request."""
    raw = np.concatenate(requests)
    pre = step_object(design.preprocess, folders["preprocess"])
    limit = design.spec.max_batch_size
    if design.kind == "text":
        lengths = [next(iter(pre({design.raw_input: raw[i:i + 1]}).values())).shape[1] for i in range(len(raw))]
        common = max(set(lengths), key=lambda n: (lengths.count(n), -n))
        group = raw[[i for i, n in enumerate(lengths) if n == common][:limit]]
    else:
        group = raw[:limit]
    pre_inputs = {design.raw_input: group}
    largest = max(range(len(requests)), key=lambda i: len(requests[i]))
    stages = expected[largest]
    post_spec = design.postprocess.spec
    post_inputs = {t.name: ({**stages.features, **stages.network})[t.name].astype(t.dtype.np_dtype)
                   for t in post_spec.inputs}
    return {
        design.preprocess.model: (pre_inputs, pre(pre_inputs)),
        design.postprocess.model: (post_inputs, stages.answers),
    }
