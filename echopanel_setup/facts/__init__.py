"""Probes that collect a `Facts` snapshot once, in parallel, each under its own timeout."""

from echopanel_setup.facts.model import Facts

__all__ = ["Facts"]
