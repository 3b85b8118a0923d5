"""What every command shares: exit codes, loading the configuration, printing diagnostics."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from dsrouter.defaults import DEFAULT_CONFIG, DEFAULT_CONFIG_NAME

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_STARTUP = 0, 1, 2, 3


def print_diagnostics(diagnostics) -> None:
    for d in diagnostics:
        print(d.render(), file=sys.stderr)
    errors = sum(1 for d in diagnostics if d.is_error)
    if errors:
        print(f"dsrouter: {errors} error(s); configuration not valid", file=sys.stderr)


def load(args, plugins=None):
    """Load and check the configuration named by ``-c`` (or the embedded default)."""
    from dsrouter.dsl import load_config, load_config_text
    from dsrouter.plugin import Plugins

    plugins = plugins or Plugins()
    specs = plugins.option_specs()
    if args.config:
        config = load_config(args.config, specs)
        source = args.config
    else:
        config = load_config_text(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, specs, base_dir=Path.cwd())
        source = DEFAULT_CONFIG_NAME
    return config, plugins, source


def print_json(obj) -> None:
    """One JSON document on stdout, newline-terminated."""
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE, default=str))
    sys.stdout.flush()
