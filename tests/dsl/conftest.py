"""Shared fixtures for the DSL tests: a small option schema that does not need real plugins."""

from __future__ import annotations

import pytest

from dsrouter.errors import ConfigError, Diagnostic
from dsrouter.options import Duration, Option, Size

SPECS = {
    "input": {
        "udp": (Option("listen", "address", help="HOST:PORT to listen on"),),
        "tls": (
            Option("listen", "address"),
            Option("allow", "ip_list", default=[]),
        ),
    },
    "output": {
        "file": (
            Option("path", "string", help="where to write"),
            Option("retain", "duration", default=Duration(30 * 86400)),
            Option("compress", "bool", default=False),
            Option("max_size", "size", default=Size(1 << 20)),
        ),
        "stdout": (),
        "webhook": (
            Option("url", "address", secret=True),
            Option("batch", "int", default=20),
        ),
    },
}

OUTPUTS = """
output archive { type = "file", path = "a.jsonl" }
output pager { type = "stdout" }
output siem { type = "stdout" }
"""


@pytest.fixture
def specs() -> dict:
    return SPECS


def diagnostics_of(text: str, **kwargs) -> list[Diagnostic]:
    """The diagnostics a failing load reports (the test fails if loading succeeds)."""
    from dsrouter.dsl import load_config_text

    kwargs.setdefault("option_specs", SPECS)
    kwargs.setdefault("path", "t.conf")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, **kwargs)
    return info.value.diagnostics
