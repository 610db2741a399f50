"""Reading each checkpoint kind without running code it carries: zip archives with bounded memory, `.pt2` programs
and the pytree types they need, safetensors weights, Hugging Face `save_pretrained` folders.

`tritongen.checkpoint` tells the kinds apart and loads them; the modules here hold what a kind needs on its own.
"""
