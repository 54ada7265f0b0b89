"""`provider`: EchoPanel's Voxtral providers, checked, replaced by ours (`fix`) and put back (`revert`).

The providers we install are package data (`templates/provider_<name>.py`): our code for EchoPanel's provider
interface — `voxtral_official` speaking vLLM's `/v1/realtime`, `voxtral_realtime` running voxtral.c, one resident
process per source. `echopanel_harness` runs a checkout's provider in that checkout's own Python, the way
EchoPanel's pipeline drives it.
"""

from __future__ import annotations

from importlib import resources

TEMPLATE = "provider_voxtral_official.py"
TEMPLATES = {"voxtral_official": TEMPLATE, "voxtral_realtime": "provider_voxtral_realtime.py"}


def template_text(provider: str = "voxtral_official") -> str:
    """The source of the provider `fix` installs for `provider` (a key of TEMPLATES)."""
    return (resources.files("echopanel_setup.provider") / "templates" / TEMPLATES[provider]).read_text(encoding="utf-8")
