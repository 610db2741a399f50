"""A pipeline run two ways, with the one runner lifecycle (`infer(feeds) -> outputs` on raw inputs):

- `StepsRunner`: as the server runs it: the step models' own code (tritongen/pipeline/steps/, rendered verbatim into
  their model.py) with the files written for them, and ONNX Runtime on the served ONNX file;
- `TransformersRunner`: the reference: the folder's tokenizer or image processor run by transformers (images decoded
  by transformers' `load_image`), the PyTorch model, and the same post-processing.

`run(raw)` returns every stage (what the network took, what it returned, the answers), for the comparisons.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.pipeline.design import STEP_FILE, PipelineDesign, StepDesign
from tritongen.runners.base import Runner, cast_feeds
from tritongen.runners.onnxruntime import OnnxRuntimeRunner


@dataclass(frozen=True)
class Stages:
    """One request through a pipeline."""

    features: dict[str, np.ndarray]  # the network's inputs
    network: dict[str, np.ndarray]  # its outputs
    answers: dict[str, np.ndarray]


def step_object(step: StepDesign, folder: Path) -> Any:
    """The step's class from tritongen/pipeline/steps/, built from the files in `folder` as model.py builds it."""
    from tritongen.pipeline.steps import image, post, text

    module = {"text": text, "image": image, "post": post}[step.code]
    return getattr(module, step.step_class).from_folder(folder, STEP_FILE)


def write_step_files(step: StepDesign, folder: Path) -> Path:
    """step.json and the step's other files (the tokenizer), as its version directory holds them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STEP_FILE).write_text(json.dumps(step.params, indent=2, ensure_ascii=False) + "\n")
    for name, text in step.files.items():
        (folder / name).write_text(text)
    return folder


class StepsRunner(Runner):
    """The pipeline as served: pre-processing code, ONNX Runtime, post-processing code."""

    name = "pipeline (its steps' code + ONNX Runtime)"

    def __init__(self, design: PipelineDesign, folders: Mapping[str, Path], onnx_path: Path) -> None:
        self.design = design
        self.folders = dict(folders)
        self.network = OnnxRuntimeRunner(onnx_path)
        self.pre: Any = None
        self.post: Any = None

    def activate(self) -> None:
        self.pre = step_object(self.design.preprocess, self.folders["preprocess"])
        self.post = step_object(self.design.postprocess, self.folders["postprocess"])
        self.network.activate()

    def deactivate(self) -> None:
        self.network.deactivate()

    def run(self, raw: np.ndarray) -> Stages:
        features = self.pre({self.design.raw_input: raw})
        network = self.network.infer(features)
        return Stages(features, network, self.post({**features, **network}))

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run(feeds[self.design.raw_input]).answers


class TransformersRunner(Runner):
    """The reference: transformers' pre-processing of the folder, the PyTorch model, the same post-processing."""

    name = "transformers + PyTorch"

    def __init__(self, design: PipelineDesign, model: Runner, fp32_dtypes: Mapping[str, Any],
                 postprocess_folder: Path) -> None:
        self.design = design
        self.model = model  # the PyTorch model (its FP32 interface: `fp32_dtypes` by input name)
        self.dtypes = dict(fp32_dtypes)
        self.postprocess_folder = postprocess_folder
        self.processor: Any = None
        self.post: Any = None

    def activate(self) -> None:
        from tritongen.sources.hf import quiet_transformers

        folder, trust = str(self.design.folder), self.design.trust
        with quiet_transformers() as transformers:
            if self.design.kind == "text":
                self.processor = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                                                            trust_remote_code=trust)
                if self.processor.pad_token is None:  # GPT-2's has none: pad with the token the step pads with
                    pad_id = self.design.preprocess.params["pad_token_id"]
                    self.processor.pad_token = self.processor.convert_ids_to_tokens(pad_id)
            else:
                self.processor = transformers.AutoImageProcessor.from_pretrained(
                    folder, local_files_only=True, trust_remote_code=trust, backend="pil")
        self.post = step_object(self.design.postprocess, self.postprocess_folder)
        self.model.activate()

    def deactivate(self) -> None:
        self.model.deactivate()

    def features(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """What transformers gives the model for these raw inputs."""
        items = list(raw.reshape(-1))
        names = [t.name for t in self.design.network_spec.inputs]
        if self.design.kind == "text":
            params = self.design.preprocess.params
            texts = [item.decode("utf-8") for item in items]
            encoded = self.processor(texts, padding=True, truncation=True, max_length=params["max_length"],
                                     padding_side=params["padding_side"], return_tensors="np")
            found = {name: np.asarray(encoded[name]) for name in names if name in encoded}
        else:
            from PIL import Image
            from transformers.image_utils import load_image

            images = [load_image(Image.open(io.BytesIO(item))) for item in items]
            found = {"pixel_values": np.asarray(self.processor(images, return_tensors="np")["pixel_values"])}
        missing = [n for n in names if n not in found]
        if missing:
            from tritongen.errors import TritongenError

            raise TritongenError(f"the folder's {'tokenizer' if self.design.kind == 'text' else 'image processor'} "
                                 f"does not give the network's input '{missing[0]}'",
                                 "build without --pipeline, or check the folder's preprocessing files")
        return cast_feeds(found, {k: v for k, v in self.dtypes.items() if k in found})

    def run(self, raw: np.ndarray) -> Stages:
        features = self.features(raw)
        network = self.model.infer(features)
        return Stages(features, network, self.post({**features, **network}))

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run(feeds[self.design.raw_input]).answers
