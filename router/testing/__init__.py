"""The conformance kit: a plugin checked against dsrouter's contracts by the author's pytest.

Opt in from a test module (or ``conftest.py`` with ``pytest_plugins = ["dsrouter.testing"]``)
by subclassing a contract; every check is one named test::

    from dsrouter.testing import Destination, OutputContract

    class TestTicketOutput(OutputContract):
        type_name = "github_issue"

        @pytest.fixture
        def destination(self, tmp_path): ...   # start the real peer, yield a Destination

        def options(self, destination):
            return {"url": destination.url, "repo": "soc/alerts", "token": "t0ken"}

See docs/plugin-testing.md for every check and what it means.
"""

import pytest

# The checks' assert statements explain themselves like a test's own (pytest rewrites them).
pytest.register_assert_rewrite(
    "dsrouter.testing.common",
    "dsrouter.testing.functions",
    "dsrouter.testing.inputs",
    "dsrouter.testing.outputs",
)

from dsrouter.testing.common import Destination, literal, sample_events  # noqa: E402
from dsrouter.testing.functions import FunctionContract  # noqa: E402
from dsrouter.testing.inputs import InputContract, Received  # noqa: E402
from dsrouter.testing.outputs import OutputContract  # noqa: E402

__all__ = [
    "Destination",
    "FunctionContract",
    "InputContract",
    "OutputContract",
    "Received",
    "literal",
    "sample_events",
]
