"""The ``dsrouter`` command line: ``main`` parses arguments and runs one command.

``main`` (argument parsing, error handling) → ``commands`` and ``delivery`` (command bodies) →
``common`` (exit codes, configuration loading); nothing here imports back up that chain.
"""

from dsrouter.cli.main import main

__all__ = ["main"]
