"""Fixtures shared by the e2e modules: the console's lab and browser (one server for every
console test module, ``console_lab.py``)."""

from tests.e2e.console_lab import browser, lab

__all__ = ["browser", "lab"]
