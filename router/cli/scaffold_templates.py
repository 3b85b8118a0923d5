"""The files ``dsrouter plugin new`` writes, as :class:`string.Template` texts (``$$``: a $).

``$name`` is the entry-point name as typed, ``$dist`` ``dsrouter-NAME``, ``$package``
``dsrouter_NAME``, ``$ident`` the type or function name (``-`` → ``_``); also ``$kind``,
``$api_major``, ``$summary`` and the kind's README section ``$usage``.
"""

from __future__ import annotations

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "$summary"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["dsrouter"]

[project.optional-dependencies]
test = ["pytest>=8"]

# dsrouter finds plugins through this entry-point group; the key is the plugin's name
# (what `dsrouter plugins` shows and `settings { disable_plugins = [...] }` takes).
[project.entry-points.dsrouter]
$name = "$package"

[tool.setuptools]
packages = ["$package"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

GITIGNORE = "__pycache__/\n*.egg-info/\nbuild/\ndist/\n"

README = """\
# $dist

A dsrouter plugin: $summary.

Written by `dsrouter plugin new $name --$kind` as a small working example: change it into
what you need. It imports only from `dsrouter.api`, the public plugin API.

## Install

```sh
pip install -e .
dsrouter plugins          # lists plugin "$name" from $dist 0.1.0
```

dsrouter finds it through the `dsrouter` entry point in `pyproject.toml`.

$usage
## Tests

```sh
pip install -e '.[test]'
python -m pytest
```

`tests/conftest.py` opts in to dsrouter's conformance kit (`pytest_plugins =
["dsrouter.testing"]`); the test classes derived from its contracts check that the plugin
behaves as dsrouter expects. Add your own tests beside them.
"""

CONFTEST = """\
\"\"\"Opt in to dsrouter's conformance kit: its contract classes and fixtures.\"\"\"

pytest_plugins = ["dsrouter.testing"]
"""

# ---- output -------------------------------------------------------------------------------

OUTPUT_SUMMARY = "an output that appends each event as a JSON line to a file"

OUTPUT_USAGE = """\
## Use it

```
output mine { type = "$ident", path = "events.jsonl" }
route everything { to mine }
```

`path` is relative to the `data_dir` of the configuration. `dsrouter check` checks the
options like a built-in's: an unknown key or a wrong kind of value is an error at its line.
"""

OUTPUT_MODULE = """\
\"\"\"The ``$ident`` output: every event appended to a file as one JSON line.\"\"\"

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dsrouter.api import Event, Option, Output, OutputContext, OutputType, RetryLater, hookimpl

#: The plugin API this plugin is written for: any dsrouter that provides $api_major.x.
dsrouter_api_version = $api_major

OPTIONS = (Option("path", "string", help="file to append to (relative: under data_dir)"),)


class FileAppendOutput(Output):
    \"\"\"Append one JSON line per event; ``send()`` returns once the lines are written.\"\"\"

    def __init__(self, name: str, options: Mapping[str, Any], context: OutputContext) -> None:
        super().__init__(name, options, context)
        self.path = os.path.join(context.data_dir, os.path.expanduser(options["path"]))
        self.fh: Any = None

    def open(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.fh = open(self.path, "a", encoding="utf-8")

    def send(self, events: Sequence[Event]) -> None:
        lines = "".join(json.dumps(event, default=str) + "\\n" for event in events)
        try:
            self.fh.write(lines)
            self.fh.flush()
        except OSError as exc:  # a full disk and the like: the batch is offered again later
            raise RetryLater(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def reopen(self) -> None:  # on reload (SIGHUP): follow a file that logrotate moved
        self.close()
        self.open()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def describe(self) -> str:
        return f"appends to {self.path}"


@hookimpl
def dsrouter_register_outputs(register: Callable[[OutputType], None]) -> None:
    \"\"\"Register the ``$ident`` output type.\"\"\"
    register(OutputType("$ident", FileAppendOutput, OPTIONS, help="events as JSON lines"))
"""

OUTPUT_TESTS = """\
\"\"\"The ``$ident`` output, checked by the conformance kit against a real file.\"\"\"

from __future__ import annotations

import importlib.metadata
import json

import pytest
from dsrouter.api import OutputContext
from dsrouter.testing import Destination, OutputContract
from $package import FileAppendOutput


class JsonLinesFile(Destination):
    def __init__(self, path) -> None:
        self.path = path

    def delivered_ids(self) -> list[str]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line).get("event_id") for line in lines]


class TestOutputContract(OutputContract):
    type_name = "$ident"

    @pytest.fixture
    def destination(self, tmp_path):
        yield JsonLinesFile(tmp_path / "events.jsonl")

    def options(self, destination) -> dict:
        return {"path": str(destination.path)}


def test_each_event_is_one_json_line(tmp_path):
    out = FileAppendOutput("mine", {"path": "out/e.jsonl"}, OutputContext(tmp_path, tmp_path))
    out.open()
    out.send([{"event_id": "1", "host": "web-01"}, {"event_id": "2", "host": "db-02"}])
    out.close()
    lines = (tmp_path / "out" / "e.jsonl").read_text().splitlines()
    assert [json.loads(line)["host"] for line in lines] == ["web-01", "db-02"]

"""

# ---- input --------------------------------------------------------------------------------

INPUT_SUMMARY = "an input that receives messages over UDP, one per datagram"

INPUT_USAGE = """\
## Use it

```
input mine { type = "$ident", listen = "0.0.0.0:5140" }
```

```sh
dsrouter send --udp 127.0.0.1:5140 --sample
```

Every datagram is one message; the daemon parses it like any syslog line and routes it.
"""

INPUT_MODULE = """\
\"\"\"The ``$ident`` input: messages received over UDP, one per datagram, passed to the sink.\"\"\"

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from typing import Any

from dsrouter.api import InputType, Option, hookimpl

#: The plugin API this plugin is written for: any dsrouter that provides $api_major.x.
dsrouter_api_version = $api_major

OPTIONS = (Option("listen", "address", help='where to listen, "HOST:PORT"'),)


class UdpListener:
    \"\"\"``start()`` binds; every datagram goes to ``sink([message], "ip:port")``.\"\"\"

    def __init__(self, name: str, host: str, port: int, sink: Callable[..., None]) -> None:
        self.name = name
        self.sink = sink
        self.address: tuple[str, int] = (host, port)
        self.stats = {"messages_total": 0, "bytes_total": 0, "sink_errors_total": 0}
        self.sock: socket.socket | None = None
        self.transport: Any = None

    async def start(self) -> None:
        host, port = self.address
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
            loop = asyncio.get_running_loop()
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.address = sock.getsockname()[:2]  # the real port when listening on :0

    def received(self, data: bytes, addr: Any) -> None:
        message = data.rstrip(b"\\r\\n")
        if not message:
            return
        self.stats["messages_total"] += 1
        self.stats["bytes_total"] += len(data)
        try:
            self.sink([message], f"{addr[0]}:{addr[1]}")
        except Exception:  # one bad message must never stop a receiver
            self.stats["sink_errors_total"] += 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # stops reading now, but closes the socket a loop turn later:
            self.transport = None
        if self.sock is not None:
            self.sock.close()  # so close it here, and the port is free when close() returns
            self.sock = None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.listener.received(data, addr)


def make_listener(name: str, options: Mapping[str, Any], sink: Callable[..., None]) -> UdpListener:
    host, port = options["listen"]
    return UdpListener(name, host, port, sink)


@hookimpl
def dsrouter_register_inputs(register: Callable[[InputType], None]) -> None:
    \"\"\"Register the ``$ident`` input type.\"\"\"
    register(InputType("$ident", make_listener, OPTIONS, help="messages over UDP"))
"""

INPUT_TESTS = """\
\"\"\"The ``$ident`` input, checked by the conformance kit over a real UDP socket.\"\"\"

from __future__ import annotations

import importlib.metadata
import socket

from dsrouter.testing import InputContract


class TestInputContract(InputContract):
    type_name = "$ident"

    def options(self) -> dict:
        return {"listen": "127.0.0.1:0"}

    def deliver(self, address, messages: list[bytes]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for message in messages:
                sock.sendto(message, tuple(address[:2]))

"""

# ---- function -----------------------------------------------------------------------------

FUNCTION_SUMMARY = "a routing-rule function that shortens a host name to its first label"

FUNCTION_USAGE = """\
## Use it

```
route web_hosts {
  when $ident(host) startswith "web-"
  to pager
}
```

`$ident("WEB-01.corp.example.com")` is `"web-01"`; an IP address is left whole. A missing
field gives null, as with every function. `dsrouter check` checks the number and types of its
arguments like a built-in's.
"""

FUNCTION_MODULE = """\
\"\"\"The ``$ident(text)`` function: a host name's first label, lower-cased.\"\"\"

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from dsrouter.api import Function, hookimpl

#: The plugin API this plugin is written for: any dsrouter that provides $api_major.x.
dsrouter_api_version = $api_major


def short_name(text: str) -> str:
    \"\"\"``"WEB-01.corp.example.com"`` → ``"web-01"``; an IP address is returned whole.\"\"\"
    text = text.strip().lower()
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text.split(".", 1)[0]
    return text


@hookimpl
def dsrouter_register_functions(register: Callable[[Function], None]) -> None:
    \"\"\"Register ``$ident(string) -> string``.\"\"\"
    register(
        Function(
            "$ident",
            short_name,
            params=("string",),
            returns="string",
            help="first label of a host name, lower-cased",
        )
    )
"""

FUNCTION_TESTS = """\
\"\"\"The ``$ident`` function, checked by the conformance kit.\"\"\"

from __future__ import annotations

import importlib.metadata

from dsrouter.testing import FunctionContract


class TestFunctionContract(FunctionContract):
    name = "$ident"
    examples = [
        (("WEB-01.corp.example.com",), "web-01"),
        (("db-02",), "db-02"),
        (("10.0.0.5",), "10.0.0.5"),
        (("2001:DB8::1",), "2001:db8::1"),
    ]

"""

#: Appended to every kind's tests: the pyproject's entry point really got installed.
ENTRY_POINT_TEST = """\

def test_the_entry_point_is_installed():
    names = {ep.name for ep in importlib.metadata.entry_points(group="dsrouter")}
    assert "$name" in names, "pip install -e . first"
"""

KINDS = {
    "output": (OUTPUT_SUMMARY, OUTPUT_USAGE, OUTPUT_MODULE, OUTPUT_TESTS),
    "input": (INPUT_SUMMARY, INPUT_USAGE, INPUT_MODULE, INPUT_TESTS),
    "function": (FUNCTION_SUMMARY, FUNCTION_USAGE, FUNCTION_MODULE, FUNCTION_TESTS),
}
