"""The `echopanel-setup` command line: thin Typer commands that parse arguments and call the modules.

One module per command (`doctor`, `serve`, ...), the options several commands share in `options`, the root app and
its lazily built command table in `app`, and `main()` (the console script `echopanel_setup.cli:main`) in `entry`.
Imports of anything heavy happen inside the commands, so `--help` and `doctor` start fast.
"""

from echopanel_setup.cli.entry import main

__all__ = ["main"]
