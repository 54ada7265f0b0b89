"""`echopanel-setup serve`: plan GPU memory, build a `vllm serve` command this vLLM accepts, render it in
several formats, and optionally run and supervise the server.

Modules: planner (pure memory model), flags (what a vLLM version accepts), builder (the command), variant
(delay-specific model dirs), formats (shell, json, docker, compose, systemd, kubernetes), launcher (starting,
watching and stopping vLLM's process), and the command itself in the shape every command follows:
context (options checked, facts gathered), prepare (plan → command), supervise (launch, status, logs, stop),
result (`ServeResult`), render (all output), and main (`run(opts) -> ServeResult`).
"""
