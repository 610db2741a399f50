"""Weights for a Hugging Face class named by `--model-class transformers:BertModel`: the class is configured by the
`config.json` beside the weights file (or by `--model-kwargs`, as config values), not by constructor arguments."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tritongen.errors import TritongenError


def is_hf_class(cls: type) -> bool:
    """Whether `cls` is a transformers model class (without importing transformers for a class that is not one)."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)


def load_into_hf_class(cls: Any, state_dict: dict[str, Any], path: Path, overrides: dict[str, Any]
                       ) -> tuple[Any, str]:
    """(the model with `state_dict` loaded, how it was loaded); missing or mismatched weights are an error."""
    import torch

    from tritongen.sources.hf import CONFIG, quiet_transformers

    config_file = path.parent / CONFIG
    with quiet_transformers():
        if config_file.is_file():
            config = cls.config_class.from_pretrained(str(path.parent), local_files_only=True)
            config.update(overrides)
        elif overrides:
            config = cls.config_class(**overrides)
        else:
            raise TritongenError(f"{cls.__name__} needs its config: there is no {CONFIG} beside '{path}'",
                                 f"put the model's {CONFIG} next to the weights, or pass its values with "
                                 "--model-kwargs JSON")
        if getattr(config, "use_cache", None):
            config.use_cache = False  # a cache object is not a tensor Triton can serve
        try:
            model, info = cls.from_pretrained(None, config=config, state_dict=state_dict, output_loading_info=True,
                                              dtype=torch.float32)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise TritongenError(f"loading '{path}' into {cls.__name__} failed: {type(exc).__name__}: {first}",
                                 "check --model-class and the config.json beside the weights") from exc
    wrong = sorted(info.get("missing_keys") or ()) + sorted(str(k) for k in info.get("mismatched_keys") or ())
    unused = sorted(info.get("unexpected_keys") or ())
    if wrong or unused:
        problems = ([f"missing or mismatched {', '.join(wrong[:3])}"] if wrong else []) + \
                   ([f"unexpected {', '.join(unused[:3])}"] if unused else [])
        raise TritongenError(f"the weights in '{path}' do not match {cls.__name__}: {' | '.join(problems)}",
                             "check --model-class names the class the weights were saved from")
    model.eval()
    configured = f"{config_file.name} beside it" if config_file.is_file() else "config from --model-kwargs"
    return model, f"safetensors weights into {cls.__name__} ({configured})"
