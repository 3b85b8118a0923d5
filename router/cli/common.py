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
    """Load and check the configuration named by ``-c`` (or the embedded default).

    Plugins load first, without those the configuration's ``disable_plugins`` names (read
    before anything is imported); ``plugins`` is reused when that list did not change."""
    from dsrouter.dsl import load_config_text
    from dsrouter.dsl.loader import disabled_plugins, read_config
    from dsrouter.plugin import Plugins

    if args.config:
        path, base = str(args.config), Path(args.config).absolute().parent
        text = read_config(args.config)
    else:
        path, base, text = DEFAULT_CONFIG_NAME, Path.cwd(), DEFAULT_CONFIG
    disabled = disabled_plugins(text, path)
    if plugins is None or plugins.disabled != disabled:
        plugins = Plugins(disabled=disabled)
    config = load_config_text(text, path, plugins.option_specs(), base_dir=base)
    return config, plugins, args.config or DEFAULT_CONFIG_NAME


def print_json(obj) -> None:
    """One JSON document on stdout, newline-terminated."""
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE, default=str))
    sys.stdout.flush()
