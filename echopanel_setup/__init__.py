"""echopanel-setup: get EchoPanel transcribing live with Voxtral Realtime, verified end to end."""

__version__ = "0.1.0"
