"""The names EchoPanel's code uses for its settings and its Voxtral providers (pranaysuyash/EchoPanel 3845da5
server/services/asr_providers.py and provider_voxtral_*.py).

Plain constants, so that doctor's EchoPanel checks can name them without importing the contract reader,
the `.env` writer and the settings rules: those are loaded only when a checkout is found, which keeps doctor's
start-up lean on the machines (a GPU host, a CI runner) that have no EchoPanel.
"""

from __future__ import annotations

# The settings' names are envconfig's (a foundation every layer reads, with their validation); named here too so that
# the EchoPanel modules say `keys.URL` beside the provider names below. KEYS: what doctor, serve, smoke and watch take
# from EchoPanel's settings.
from echopanel_setup.envconfig import API_KEY, DELAY, KEYS, MODE, URL
from echopanel_setup.envconfig import PROVIDER as SELECTOR

__all__ = ["API_KEY", "DELAY", "KEYS", "MODE", "SELECTOR", "URL", "VOXTRAL", "VOXTRAL_PROVIDERS"]

VOXTRAL = "voxtral_official"
VOXTRAL_PROVIDERS = ("voxtral_official", "voxtral_realtime")
