"""`watch`: is a running vLLM keeping up with EchoPanel's live streams, and for how long can it?

Modules: `prom` (a small Prometheus text parser), `sample` (the signals one `/metrics` page holds, by
whatever name this vLLM version gives them), `derive` (rates between two samples and the verdicts, pure),
`runner` (the HTTP side, the serve plan and the loop: `run(opts) -> WatchResult`), `render`.
What each metric means for a realtime session is in docs/metrics.md.
"""
