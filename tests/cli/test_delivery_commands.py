"""``dsrouter dlq``, ``queue status`` and ``reload`` without a running daemon: they work on
the files directly (the daemon-side paths are covered in tests/e2e)."""

from __future__ import annotations

import json

import pytest

from dsrouter.cli import main
from dsrouter.delivery.deadletter import DeadLetters, Letter
from dsrouter.delivery.diskqueue import read_records

CONF = """\
settings { data_dir = "./data" }
output archive { type = "file", path = "a.jsonl", queue = "disk" }
output pager   { type = "stdout" }
route everything { to archive, pager }
"""


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "dsrouter.conf"
    path.write_text(CONF)
    return path


def _letters(tmp_path, output: str, n: int) -> list[str]:
    store = DeadLetters(tmp_path / "data" / "deadletter")
    events = [
        {"event_id": f"e{i}", "host": "web-01", "module": "firewall", "name": f"n{i}"}
        for i in range(n)
    ]
    return store.add(output, [Letter(ev, "permanent failure: HTTP 400", 3) for ev in events])


def test_dlq_list_and_show(conf, tmp_path, capsys):
    ids = _letters(tmp_path, "archive", 2)
    assert main(["dlq", "list", "-c", str(conf)]) == 0
    out = capsys.readouterr().out
    assert out.count("  archive  ") == 2 and "host=web-01" in out and "2 dead letter(s)" in out
    assert main(["dlq", "show", "-c", str(conf), "--id", ids[1]]) == 0
    (shown,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert shown["dlq_id"] == ids[1] and shown["attempts"] == 3 and shown["event"]["name"] == "n1"


def test_dlq_replay_offline_puts_the_events_on_the_output_queue(conf, tmp_path, capsys):
    _letters(tmp_path, "archive", 3)
    assert main(["dlq", "replay", "-c", str(conf), "--output", "archive"]) == 0
    assert "3 dead letter(s) replayed" in capsys.readouterr().out
    queued = [r.event["event_id"] for r in read_records(tmp_path / "data" / "queues" / "archive")]
    assert queued == ["e0", "e1", "e2"]
    assert DeadLetters(tmp_path / "data" / "deadletter").counts().get("archive", 0) == 0


def test_dlq_purge_by_id(conf, tmp_path, capsys):
    ids = _letters(tmp_path, "pager", 3)
    assert main(["dlq", "purge", "-c", str(conf), "--id", ids[0]]) == 0
    assert "1 dead letter(s) purged" in capsys.readouterr().out
    left = [s.dlq_id for s in DeadLetters(tmp_path / "data" / "deadletter").list()]
    assert left == ids[1:]


@pytest.mark.parametrize("name", ["nosuch", "../etc"])
def test_dlq_unknown_output_is_a_clear_error(conf, capsys, name):
    assert main(["dlq", "list", "-c", str(conf), "--output", name]) == 1
    err = capsys.readouterr().err
    assert "no output named" in err and "archive, pager" in err and "Traceback" not in err


def test_queue_status_without_a_daemon(conf, tmp_path, capsys):
    _letters(tmp_path, "pager", 1)
    assert main(["queue", "status", "-c", str(conf), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["daemon_running"] is False
    assert status["outputs"]["archive"]["queue_type"] == "disk"
    assert status["outputs"]["pager"]["dead_letters"] == 1


def test_reload_without_a_daemon_exits_3(conf, capsys):
    assert main(["reload", "-c", str(conf)]) == 3
    assert "no dsrouter daemon is running" in capsys.readouterr().err


def test_reload_of_an_invalid_config_is_refused_locally(tmp_path, capsys):
    bad = tmp_path / "bad.conf"
    bad.write_text("route all { to nowhere }\n")
    assert main(["reload", "-c", str(bad)]) == 1
    assert "refused" in capsys.readouterr().err
