"""dsrouter-assets: who owns a host and how critical it is, in routing rules; and tickets.

* ``asset_owner(host)`` and ``asset_criticality(host)``: the ``owner`` and ``criticality``
  columns of the CSV asset inventory named by ``DSROUTER_ASSETS`` (see :mod:`.inventory`);
* the ``github_issue`` output: one issue per event in a GitHub, GitHub Enterprise, Gitea or
  Forgejo repository (see :mod:`.tickets`).

It imports nothing from dsrouter but ``dsrouter.api``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dsrouter.api import Function, OutputContext, OutputType, hookimpl

from .inventory import ENV, asset_criticality, asset_owner
from .tickets import OPTIONS, IssueOutput

__version__ = "0.1.0"

#: The plugin API this plugin is written for: any dsrouter providing 1.x.
dsrouter_api_version = 1


def _issue_output(name: str, options: Mapping[str, Any], context: OutputContext) -> IssueOutput:
    return IssueOutput(name, options, context)


@hookimpl
def dsrouter_register_functions(register: Callable[[Function], None]) -> None:
    """Register ``asset_owner(host)`` and ``asset_criticality(host)``."""
    where = f"from the CSV inventory named by ${ENV}; null for an unknown host"
    register(
        Function(
            "asset_owner",
            asset_owner,
            params=("string",),
            returns="string",
            pure=False,  # the inventory can change while the daemon runs
            help=f"owner of a host {where}",
        )
    )
    register(
        Function(
            "asset_criticality",
            asset_criticality,
            params=("string",),
            returns="string",
            pure=False,
            help=f"criticality of a host (lower case) {where}",
        )
    )


@hookimpl
def dsrouter_register_outputs(register: Callable[[OutputType], None]) -> None:
    """Register the ``github_issue`` output type."""
    register(
        OutputType(
            "github_issue",
            _issue_output,
            OPTIONS,
            help="one issue per event via the GitHub Issues API (GitHub, Enterprise, Gitea)",
            default_queue="disk",
        )
    )
