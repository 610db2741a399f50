"""The TensorRT format: plans for Triton's tensorrt_plan platform, built with the TensorRT of the serving release.

| module | holds |
| --- | --- |
| `profiles` | `--dynamic-range` (parsed once), optimization profiles from the ModelSpec |
| `builder` | `TensorRTOptions`, whether a builder can run here, the in-process and container builders |
| `container` | one-off containers run to completion and always removed (Docker SDK) |
| `job` | `PlanJob` (one plan to build) and the job directory the builder script reads |
| `engine` | what the engine says about itself; the config taken from it and checked against it |
| `versions` | a plan loads only in the TensorRT that built it: the checks `validate` uses |
| `step` | `plan_into_version_dir`: the step `build` calls |
| `format` | the registry entry (`tritongen.formats`): what build needs from this format |
| `trt_builder` | the standalone builder script (TensorRT Python API, numpy, libcudart), run in-process or in the image |

What has run where: profiles, the container plumbing (against the real Docker engine), configs from engine
metadata and the version checks are tested here; the builder script only against a mock `tensorrt` module,
because this project's machines have no GPU and cannot install TensorRT. Tests that need the real thing are
marked `tensorrt` and skip with a reason.
"""
