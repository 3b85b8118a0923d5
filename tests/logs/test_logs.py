"""Logging: JSON lines when stderr is not a terminal, console rendering on one; always stderr."""

from __future__ import annotations

import orjson

from dsrouter import logs


def test_json_lines_on_stderr(capsys):
    logs.configure("info", json=True)
    logs.get_logger().info("listener_started", input="udp_in")
    captured = capsys.readouterr()
    assert captured.out == ""
    rec = orjson.loads(captured.err.strip())
    assert rec["event"] == "listener_started" and rec["input"] == "udp_in"
    assert rec["level"] == "info" and rec["timestamp"].endswith("Z")


def test_console_rendering_is_readable(capsys):
    logs.configure("info", json=False)
    logs.get_logger().warning("delivery_failed", output="pager")
    err = capsys.readouterr().err
    assert "delivery_failed" in err and "output=pager" in err and not err.startswith("{")


def test_level_filters(capsys):
    logs.configure("warning", json=True)
    logs.get_logger().info("quiet")
    assert capsys.readouterr().err == ""
