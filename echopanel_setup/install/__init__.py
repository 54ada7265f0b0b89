"""`install voxtral` (the model files) and `install vllm` (the runtime in its own venv).

Modules: hub (the Hub through huggingface_hub), fetch (resumable, hashed transfers), digest (hashing),
manifest (what was verified), orphans (huggingface_hub's leftover temp files), progress (the display),
writable (can the install write there), voxtral (the model install), venv and vllm (the runtime install).
Imported lazily by cli.
"""
