"""`smoke`: prove that the server really transcribes, the way EchoPanel talks to it.

A `/health` answer says nothing about the realtime route, the served model name, the audio format or
the delay; one real transcription of a known clip, scored against its text, does. Modules: `audio` (the
bundled clip, user files to 16 kHz mono PCM16), `client` (vLLM's /v1/realtime), `server` (discovery and
the HTTP route), `api` (Mistral's SDK), `scoring` (WER), `runner` (what to test and the run), `render`.
"""
