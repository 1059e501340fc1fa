"""The ``ems`` command line (:func:`ems.cli.main.main`); nothing but the CLI imports the simulation."""

from ems.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
