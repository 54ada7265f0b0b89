"""`configure`: write EchoPanel's settings where EchoPanel reads them — `<checkout>/.env` — by EchoPanel's own rules.

EchoPanel's backend reads only its process environment and `<checkout>/.env`, with its own parser (EchoPanel's
`server/main.py`, reproduced in `echopanel/dotenv.py`). So configure finds the checkout (`echopanel/discover.py`), reads
the provider it will select from the checkout's files (`echopanel/contract.py`), writes only the keys that provider
reads, refuses a selection known not to work (`echopanel/settings.py`), merges into the user's `.env` keeping every
other line, and reads the result back with EchoPanel's parser to show what the backend will really see — including
the environment variables that will win over the file.

`--output FILE` writes another file by the same rules; `--shell` prints `export` lines for the shell that starts the
backend (secrets only as references, never literals). The per-user `echopanel.env` earlier versions wrote (EchoPanel
never read it) is offered for migration into `.env`, then renamed `echopanel.env.migrated`.

Modules: `result` (options, plan, result, refusals), `plan` (the decisions), `vllm_url` (which server),
`api_key` (--mode api), `voxtral_realtime` (the voxtral.c provider), `migrate` (the retired file), `write` (the target
and the locked write), `runner` (`run(opts, ui) -> ConfigureResult`), `render` (human and JSON output).
"""
