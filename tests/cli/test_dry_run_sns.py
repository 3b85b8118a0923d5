"""`dsrouter dry-run` takes SNS JSON files (a notification body, a bare event array, one
document per line) beside syslog lines, and routes them with the same rules."""

from __future__ import annotations

import json
import subprocess
import sys

CONF = """\
route ips { when module == "intrusion_prevention"; to archive }
route rest { to archive }
output archive { type = "stdout" }
"""

EVENT = {
    "EventType": "PayloadLog",
    "HostID": 12,
    "Hostname": "web-01 (i-0abc)",
    "TenantName": "Primary",
    "TenantID": 0,
    "SourceIP": "203.0.113.9",
    "DestinationIP": "192.0.2.15",
    "Reason": "Generic Cross Site Scripting(XSS) Prevention",
    "Severity": 3,
    "LogDate": "2026-11-27T23:18:32.000Z",
}
LINE = "<134>Nov 27 23:18:32 web-01 CEF:0|Trend Micro|Deep Security Agent|20.0|1000552|XSS|8|dvchost=web-01"


def dry(tmp_path, *files):
    conf = tmp_path / "d.conf"
    conf.write_text(CONF)
    done = subprocess.run(
        [sys.executable, "-m", "dsrouter", "dry-run", "-c", str(conf), "--json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(x) for x in done.stdout.splitlines()]


def test_notification_body_pretty_printed(tmp_path):
    body = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ds",
        "Message": json.dumps([EVENT, dict(EVENT, EventType="SystemEvent", Reason="x")]),
    }
    path = tmp_path / "note.json"
    path.write_text(json.dumps(body, indent=2))
    rows = dry(tmp_path, path)
    assert [r["event"]["format"] for r in rows] == ["sns", "sns"]
    assert rows[0]["event"]["module"] == "intrusion_prevention"
    assert rows[0]["routes"] == ["ips"] and rows[0]["line"] == 1


def test_one_document_per_line_mixed_with_syslog(tmp_path):
    path = tmp_path / "mixed.log"
    path.write_text(json.dumps([EVENT]) + "\n" + LINE + "\n")
    rows = dry(tmp_path, path)
    assert [(r["line"], r["event"]["format"], r["routes"]) for r in rows] == [
        (1, "sns", ["ips"]),
        (2, "cef", ["ips"]),
    ]


def test_json_that_is_not_sns_is_an_unparsed_event(tmp_path):
    path = tmp_path / "x.log"
    path.write_text('{"hello": 1}\n')
    rows = dry(tmp_path, path)
    assert rows[0]["event"]["format"] == "unknown" and rows[0]["routes"] == ["rest"]
