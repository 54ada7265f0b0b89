"""`tunnel start|status|stop`: an ssh forward from this machine's loopback to vLLM on a GPU host's loopback.

`ssh.py` builds the ssh command and reads its failures; `supervise.py` keeps ssh running (reconnects with
backoff); `records.py` is the record in our state dir (`records.current()` is what configure and setup use);
`main.py` is `run(opts) -> TunnelResult`; `render.py` all the output.
"""
