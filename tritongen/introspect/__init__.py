"""What a model takes and returns: its inputs bound by name, the values each input takes, its outputs.

`inputs.py`: input names (forward(), a TorchScript schema, an exported program's call structure) and `--input` bound
to them by name. `domains.py`: the values each input takes (the vocabulary of the embedding it feeds, masks,
positions). `outputs.py`: the model called the way it takes its inputs, its tensor outputs named and selected. `lengths.py`:
axis lengths the model runs at, when the defaults are too short (audio convolutions).
"""

from tritongen.introspect.domains import program_domains, with_value_domains
from tritongen.introspect.inputs import (
    ModelInputs,
    bind_inputs,
    inputs_for_module,
    inputs_for_program,
    inputs_of_module,
    inputs_of_program,
)
from tritongen.introspect.lengths import at_workable_lengths
from tritongen.introspect.outputs import (
    BoundModel,
    ModelFailed,
    OutputSelection,
    bound_model,
    outputs_of,
    outputs_of_module,
    select_outputs,
    selected_outputs,
    tensor_outputs,
)

__all__ = ["BoundModel", "ModelFailed", "ModelInputs", "OutputSelection", "at_workable_lengths", "bind_inputs",
           "bound_model", "inputs_for_module", "inputs_for_program", "inputs_of_module", "inputs_of_program",
           "outputs_of", "outputs_of_module", "program_domains", "select_outputs", "selected_outputs",
           "tensor_outputs", "with_value_domains"]
