"""The names EchoPanel's code uses for its settings and its Voxtral providers (pranaysuyash/EchoPanel 3845da5
server/services/asr_providers.py and provider_voxtral_*.py).

A module of plain constants so that doctor's EchoPanel checks can name them without importing the contract reader,
the `.env` writer and the settings rules: those are loaded only when a checkout is found, which keeps doctor's
start-up lean on the machines (a GPU host, a CI runner) that have no EchoPanel.
"""

from __future__ import annotations

SELECTOR = "ECHOPANEL_ASR_PROVIDER"
VOXTRAL = "voxtral_official"
VOXTRAL_PROVIDERS = ("voxtral_official", "voxtral_realtime")
URL = "VOXTRAL_VLLM_URL"
DELAY = "VOXTRAL_STREAMING_DELAY_MS"
MODE = "VOXTRAL_MODE"
API_KEY = "VOXTRAL_MISTRAL_API_KEY"
KEYS = (SELECTOR, URL, DELAY, MODE, API_KEY)  # what doctor, serve, smoke and watch take from EchoPanel's settings
