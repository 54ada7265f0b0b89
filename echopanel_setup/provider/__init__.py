"""`provider`: EchoPanel's `voxtral_official` provider, checked, replaced by ours (`fix`) and put back (`revert`).

The provider we install is package data (`templates/provider_voxtral_official.py`): our code for EchoPanel's
provider interface, speaking vLLM's `/v1/realtime`. `echopanel_harness` runs a checkout's provider in that
checkout's own Python, the way EchoPanel's pipeline drives it.
"""

from __future__ import annotations

from importlib import resources

TEMPLATE = "provider_voxtral_official.py"


def template_text() -> str:
    """The source of the provider `fix` installs."""
    return (resources.files("echopanel_setup.provider") / "templates" / TEMPLATE).read_text(encoding="utf-8")
