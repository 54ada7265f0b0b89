"""`echopanel-setup serve`: plan GPU memory, build a `vllm serve` command this vLLM accepts, render it in
several formats, and optionally run and supervise the server.

Modules: planner (pure memory model), flags (what a vLLM version accepts), builder (the command), variant
(delay-specific model dirs), formats (shell, json, docker, compose, systemd, kubernetes), launcher
(--exec, --detach, --status, --logs, --stop) and main (gathers the inputs and ties them together).
"""
