"""The file output: JSON lines, templated paths, and no way out of its directory."""

from __future__ import annotations

import os

import orjson
import pytest

from dsrouter.api import OutputContext, PermanentFailure
from dsrouter.plugin import Plugins
from dsrouter.plugins.file import PathTemplate, sanitize


@pytest.fixture
def make(tmp_path):
    kind = Plugins(entry_points=False).outputs["file"]

    def make(path, **opts):
        options = {"path": path, "max_open_files": 64, **opts}
        out = kind.factory("archive", options, OutputContext(tmp_path / "data", tmp_path))
        out.open()
        return out

    return make


def _read(path):
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def test_writes_json_lines_grouped_by_template(make, tmp_path):
    out = make("archive/{module}/{host}/{date}.jsonl")
    events = [
        {
            "module": "firewall",
            "host": "web-01",
            "received_at": "2026-11-28T01:00:00+00:00",
            "n": 1,
        },
        {
            "module": "anti_malware",
            "host": "web-01",
            "received_at": "2026-11-28T01:00:00+00:00",
            "n": 2,
        },
        {
            "module": "firewall",
            "host": "web-01",
            "received_at": "2026-11-28T02:00:00+00:00",
            "n": 3,
        },
    ]
    out.send(events)
    out.close()
    base = tmp_path / "data" / "archive"
    assert [e["n"] for e in _read(base / "firewall" / "web-01" / "2026-11-28.jsonl")] == [1, 3]
    assert [e["n"] for e in _read(base / "anti_malware" / "web-01" / "2026-11-28.jsonl")] == [2]


@pytest.mark.parametrize(
    "host",
    [
        "../../etc",
        "..",
        ".",
        "/etc/passwd",
        "a/../../b",
        "..\\..\\windows",
        "x\x00y",
        "",
        None,
        "....//....//etc",
        "~root",
        "$(reboot)",
        "a" * 5000,
    ],
    ids=[
        "dotdot-etc",
        "dotdot",
        "dot",
        "absolute",
        "nested",
        "backslash",
        "nul",
        "empty",
        "missing",
        "dots-slashes",
        "tilde",
        "shell",
        "very-long",
    ],
)
def test_attacker_controlled_values_stay_inside_the_directory(make, tmp_path, host):
    out = make("archive/{host}/{module}.jsonl")
    out.send([{"host": host, "module": "firewall", "n": 1}])
    out.close()
    root = (tmp_path / "data" / "archive").resolve()
    written = [p for p in (tmp_path).rglob("*") if p.is_file()]
    assert len(written) == 1
    assert root in written[0].resolve().parents
    assert written[0].parent.parent == root  # exactly one component per placeholder


def test_sanitize_keeps_one_harmless_component():
    assert sanitize("../../etc") == "_._.._etc"
    assert "/" not in sanitize("a/b") and not sanitize("..").startswith(".")


def test_template_from_config_cannot_escape(tmp_path):
    t = PathTemplate("archive/{module}/../../../x.jsonl", tmp_path)
    with pytest.raises(PermanentFailure):
        t.render({"module": "firewall"})


def test_syslog_field_and_lru_of_open_files(make, tmp_path):
    out = make("by-sender/{syslog.hostname}.jsonl", max_open_files=2)
    for i in range(5):
        out.send([{"syslog": {"hostname": f"dsm{i % 3}"}, "n": i}])
    assert len(out._fds) == 2
    out.close()
    got = {p.name: [e["n"] for e in _read(p)] for p in (tmp_path / "data" / "by-sender").iterdir()}
    assert got == {"dsm0.jsonl": [0, 3], "dsm1.jsonl": [1, 4], "dsm2.jsonl": [2]}
    assert os.listdir(tmp_path / "data" / "by-sender")


def test_stdout_output_writes_json_lines(capsysbinary):
    kind = Plugins(entry_points=False).outputs["stdout"]
    out = kind.factory("console", {"pretty": False}, OutputContext(None, None))
    out.send([{"module": "firewall", "n": 1}, {"module": "system", "n": 2}])
    lines = capsysbinary.readouterr().out.splitlines()
    assert [orjson.loads(x)["n"] for x in lines] == [1, 2]
