"""`watch`: is a running vLLM keeping up with EchoPanel's live streams, and for how long can it?

`runner` (the HTTP side, the serve plan and the loop: `run(opts) -> WatchResult`) and `render`. Reading and
judging a `/metrics` page is `echopanel_setup.metrics` (a reader: doctor's `server.live` uses it too).
"""
