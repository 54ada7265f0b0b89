"""A vLLM server's `/metrics`, read for realtime sessions: `prom` (a small Prometheus text parser), `sample` (the
signals one page holds, by whatever name this vLLM version gives them), `derive` (rates between two samples and
the verdicts, pure). A reader: `doctor` keeps one sample in its facts (`server.live`), `watch` samples on and on.
What each metric means for a realtime session is in docs/metrics.md.
"""
