"""SNS JSON events → normalized events: the mapping, files for dry-run, and routing parity.

A rule written for the syslog road must route the SNS form of the same event the same way:
each pair below is one event as DS writes it in CEF and in SNS JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsrouter.ds import parse_message
from dsrouter.ds.catalog import FIELDS
from dsrouter.ds.sns import events_from_message, parse_sns_document
from dsrouter.ds.sns_table import MAPPING, SNS_FIELDS
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.plugin import Plugins

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
H = "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|"

PAIRS = {
    "firewall-deny-netbios": (
        H + "Deep Security Agent|20.0.913|21|Out Of Allowed Policy|5|cn1=7 cn1Label=Host ID "
        "dvc=192.0.2.15 act=Deny src=198.51.100.7 dst=192.0.2.15 spt=5353 dpt=137 proto=UDP "
        "TrendMicroDsTenant=Primary TrendMicroDsTenantId=0",
        {
            "EventType": "PacketLog",
            "Action": 1,
            "ActionString": "Deny",
            "Reason": "Out Of Allowed Policy",
            "Hostname": "192.0.2.15 (file server) [i-0abc]",
            "HostID": 7,
            "SourceIP": "198.51.100.7",
            "DestinationIP": "192.0.2.15",
            "SourcePort": 5353,
            "DestinationPort": 137,
            "ProtocolString": "UDP",
            "TenantName": "Primary",
            "TenantID": 0,
        },
    ),
    "firewall-log-primary": (
        H + "Deep Security Agent|20.0.913|20|Log for TCP Port 80|0|cn1=7 cn1Label=Host ID "
        "dvc=192.0.2.15 act=Log src=198.51.100.7 dpt=80 proto=TCP TrendMicroDsTenant=Primary "
        "TrendMicroDsTenantId=0",
        {
            "EventType": "PacketLog",
            "Action": 6,
            "Reason": "Log for TCP Port 80",
            "Hostname": "192.0.2.15",
            "HostID": 7,
            "SourceIP": "198.51.100.7",
            "DestinationPort": 80,
            "ProtocolString": "TCP",
            "TenantName": "Primary",
            "TenantID": 0,
        },
    ),
    "ips-detect-only": (
        H + "Deep Security Agent|20.0.1.690|1000552|Generic Cross Site Scripting(XSS) "
        "Prevention|8|cn1=12 cn1Label=Host ID dvchost=web-01 src=203.0.113.9 spt=51234 dpt=80 "
        "act=IDS:Reset",
        {
            "EventType": "PayloadLog",
            "Action": 0x82,
            "Reason": "Generic Cross Site Scripting(XSS) Prevention",
            "Severity": 3,
            "SeverityString": "High",
            "Hostname": "web-01 (Web front) [i-0def]",
            "HostID": 12,
            "SourceIP": "203.0.113.9",
            "SourcePort": 51234,
            "DestinationPort": 80,
        },
    ),
    "anti-malware-quarantine": (
        H + "Deep Security Agent|20.0.913|4000000|Eicar_test_file|6|cn1=1 cn1Label=Host ID "
        "dvchost=ws-22 act=Quarantine filePath=/tmp/eicar.com msg=Realtime",
        {
            "EventType": "AntiMalwareEvent",
            "MalwareName": "Eicar_test_file",
            "ScanResultString": "Quarantined",
            "ScanTypeString": "Real Time",
            "InfectedFilePath": "/tmp/eicar.com",
            "Hostname": "ws-22",
            "HostID": 1,
        },
    ),
    "system-alert-ended": (
        H + "Deep Security Manager|20.0.913|192|Alert Ended|3|src=192.0.2.20 suser=System "
        "target=web-01 msg=Alert: CPU Warning TrendMicroDsTenant=Primary TrendMicroDsTenantId=0",
        {
            "EventType": "SystemEvent",
            "Number": 192,
            "Title": "Alert Ended",
            "Severity": 1,
            "SeverityString": "Info",
            "ActionBy": "System",
            "TargetName": "web-01",
            "Description": "Alert: CPU Warning",
            "ManagerNodeName": "dsm01",
            "TenantName": "Primary",
            "TenantID": 0,
        },
    ),
    "integrity-updated": (
        H + "Deep Security Agent|20.0.913|2002779|Unix - File attributes changed|6|cn1=3 "
        "cn1Label=Host ID dvchost=db-1 act=updated filePath=/etc/passwd",
        {
            "EventType": "IntegrityEvent",
            "ChangeString": "Updated",
            "Key": "/etc/passwd",
            "Reason": "Unix - File attributes changed",
            "SeverityString": "Medium",
            "Hostname": "db-1",
            "HostID": 3,
        },
    ),
    "web-reputation": (
        H + "Deep Security Agent|20.0.913|5000000|WebReputation|6|cn1=3 cn1Label=Host ID "
        "dvchost=db-1 request=http://bad.example/x msg=Suspicious",
        {
            "EventType": "WebReputationEvent",
            "URL": "http://bad.example/x",
            "Risk": 3,
            "Hostname": "db-1",
        },
    ),
    "log-inspection": (
        H + "Deep Security Agent|20.0.913|3002795|Microsoft Windows Events|8|cn1=4 "
        "cn1Label=Host ID dvchost=dc-1 cs1=Multiple Windows Logon Failures cs1Label=LI "
        "Description src=10.1.2.3",
        {
            "EventType": "LogInspectionEvent",
            "OSSEC_Description": "Multiple Windows Logon Failures",
            "OSSEC_SourceIP": "10.1.2.3",
            "OSSEC_Level": 10,
            "Hostname": "dc-1",
            "HostID": 4,
        },
    ),
    "application-control": (
        H + "Deep Security Agent|20.0.913|6001200|AppControl detectOnly|6|cn1=9 "
        "cn1Label=Host ID dvchost=build-7 act=detectOnly filePath=/opt/x.sh",
        {
            "EventType": "AppControlEvent",
            "Action": "Execution of Unrecognized Software Allowed",
            "Hostname": "build-7",
            "HostID": 9,
        },
    ),
}

RULES = """
output o { type = "stdout" }
route critical {
  when severity >= 8 and module in ["intrusion_prevention", "anti_malware"] and src not in [10.99.0.0/16]
  to o
  continue
}
route netbios { when module == "firewall" and act == "Deny" and dpt in [137, 138, 139]; drop }
route primary_firewall { when module == "firewall" and tenant == "Primary" and tenant_id == 0 and dvc in 192.0.2.0/24; to o }
route ids { when act startswith "IDS:" and host == "web-01" and host_id == 12 and spt == 51234; to o }
route malware { when module == "anti_malware" and act == "Quarantine" and filePath contains "eicar" and msg == "Realtime"; to o }
route alerts { when module == "system" and signature_id in [190, 192] and suser == "System" and host == "dsm01"; to o }
route changes { when module == "integrity_monitoring" and act == "updated" and filePath == "/etc/passwd" and severity == 6; to o }
route web { when module == "web_reputation" and request contains "bad.example"; to o }
route logons { when module == "log_inspection" and li_description contains "Logon Failures" and src in 10.0.0.0/8; to o }
route apps { when module == "application_control" and act == "detectOnly" and host == "build-7"; to o }
route everything { to o }
"""


@pytest.fixture(scope="module")
def table():
    specs = Plugins(entry_points=False).option_specs()
    return compile_routes(load_config_text(RULES, "parity.conf", specs))


@pytest.mark.parametrize("name", list(PAIRS))
def test_a_syslog_rule_routes_the_sns_form_the_same_way(table, name):
    line, props = PAIRS[name]
    cef = parse_message(line, "syslog_in", "192.0.2.1:514", "now")
    (sns,) = parse_sns_document(json.dumps([props]), "sns_in")
    assert cef.get("parse_error") is None and sns["format"] == "sns" and cef["format"] == "cef"
    assert sns["module"] == cef["module"] != "unknown"
    cef_decision, sns_decision = table.decide(cef), table.decide(sns)
    assert sns_decision.routes == cef_decision.routes, name
    assert sns_decision.dropped == cef_decision.dropped
    assert cef_decision.routes != ("everything",), "the pair must exercise a specific rule"


def test_every_mapped_field_is_in_the_schema_rules_are_checked_against():
    assert {row.field for row in MAPPING} <= FIELDS.keys()
    assert SNS_FIELDS.keys() <= FIELDS.keys() and FIELDS["sns.topic_arn"].source == "sns"


def test_a_packet_log_becomes_the_cef_field_names():
    (ev,) = parse_sns_document(json.dumps([PAIRS["firewall-deny-netbios"][1]]), "f")
    assert (ev["module"], ev["product"], ev["act"], ev["severity"]) == (
        "firewall",
        "Deep Security Agent",
        "Deny",
        5,
    )
    assert (ev["host"], ev["dvc"], ev["host_id"], ev["cn1"]) == ("192.0.2.15", "192.0.2.15", 7, 7)
    assert (ev["src"], ev["dst"], ev["spt"], ev["dpt"], ev["proto"]) == (
        "198.51.100.7",
        "192.0.2.15",
        5353,
        137,
        "UDP",
    )
    assert ev["Hostname"] == "192.0.2.15 (file server) [i-0abc]" and ev["ActionString"] == "Deny"
    assert "dvchost" not in ev and ev["input"] == "f" and ev["sns"] == {"index": 0}


def test_a_notification_body_fills_the_envelope_and_times_and_decodes_java_escapes():
    inner = (
        '[{"EventType":"PacketLog","Flags":"SYN DF\\u003d1","LogDate":"2016-08-04T01:07:17.08Z"},'
        '{"EventType":"SystemEvent","Title":"a\\\\u003cb\\\\u003e","Number":"600"}]'
    )
    body = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ds",
        "Timestamp": "2016-08-04T01:07:18.000Z",
        "Message": inner,
        "SignatureVersion": "2",
    }
    first, second = parse_sns_document(json.dumps(body), "dry-run", "t0")
    assert first["Flags"] == "SYN DF=1" and second["Title"] == "a<b>" and second["name"] == "a<b>"
    assert first["time"] == "2016-08-04T01:07:17.080Z" and second["signature_id"] == 600
    assert first["sns"] == {
        "type": "Notification",
        "message_id": "m-1",
        "topic_arn": "arn:aws:sns:us-east-1:123456789012:ds",
        "timestamp": "2016-08-04T01:07:18.000Z",
        "signature_version": "2",
        "index": 0,
    }
    assert second["sns"]["index"] == 1 and first["received_at"] == "t0"
    assert json.loads(first["raw"]) == {
        "EventType": "PacketLog",
        "Flags": "SYN DF=1",
        "LogDate": "2016-08-04T01:07:17.08Z",
    }


def test_documents_that_are_not_sns_json_give_none():
    for text in (
        "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|1|2|n|3|",
        "",
        "[1, 2]",
        '{"hello": "world"}',
        '[{"EventType": "PacketLog"}, {"other": 1}]',
        '{"Type": "SubscriptionConfirmation", "Message": "x"}',
        "[{",
        "[]",
    ):
        assert parse_sns_document(text) is None, text


def test_a_single_object_and_a_lambda_record_are_accepted():
    (one,) = parse_sns_document('{"EventType": "WebReputationEvent", "URL": "http://x"}')
    assert one["module"] == "web_reputation" and one["name"] == "WebReputation"
    record = {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "r1",
                    "Subject": None,
                    "Message": '[{"EventType": "AntiMalwareEvent"}]',
                    "SigningCertUrl": "https://x",
                },
            }
        ]
    }
    (ev,) = parse_sns_document(json.dumps(record))
    assert ev["module"] == "anti_malware" and ev["sns"]["message_id"] == "r1"
    assert "subject" not in ev["sns"]


def test_messages_without_ds_events_still_flow_as_unknown_events():
    (text,) = events_from_message(
        "Hello from the SNS console", {"type": "Notification"}, "i", "p", "t"
    )
    assert text["module"] == "unknown" and text["msg"] == "Hello from the SNS console"
    assert "not JSON" in text["parse_error"] and text["format"] == "sns"
    odd = events_from_message('[{"EventType": "Nope", "X": 1}, 5]', {}, "i", "p", "t")
    assert odd[0]["module"] == "unknown" and "parse_error" not in odd[0] and odd[0]["X"] == 1
    assert odd[1]["parse_error"] == "SNS event is not a JSON object" and odd[1]["raw"] == "5"
    assert events_from_message("[]", {}, "i", "p", "t") == []


def test_properties_that_collide_with_normalized_names_are_shadowed_and_counts_bounded():
    props = {
        "EventType": "PacketLog",
        "module": "system",
        "input": "x",
        "src": "1.2.3.4",
        "Action": 1,
    }
    (ev,) = events_from_message(json.dumps([props]), {}, "real", "p", "t")
    assert ev["module"] == "firewall" and ev["input"] == "real" and "src" not in ev
    assert ev["ext_shadowed"] == {"module": "system", "input": "x", "src": "1.2.3.4"}
    many = {"EventType": "PacketLog", **{f"P{i}": i for i in range(600)}}
    (big,) = events_from_message(json.dumps([many]), {}, "i", "p", "t")
    assert "P510" in big and "P599" not in big and "512" in big["parse_error"]


def _corpus_lines():
    if not CORPUS.is_dir():
        return []
    return [
        pytest.param(line, id=f"{path.stem}:{n}")
        for path in sorted(CORPUS.glob("*sns*.log"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip()
    ]


@pytest.mark.parametrize(
    "line",
    _corpus_lines()
    or [pytest.param(None, marks=pytest.mark.skip(reason="../shared/corpus is not here"))],
)
def test_public_sns_samples_normalize(line):
    events = parse_sns_document(line, "corpus")
    assert events, line[:80]
    for ev in events:
        assert ev["module"] in {"system", "firewall", "anti_malware"} and "parse_error" not in ev
        assert ev["host"] and isinstance(ev.get("tenant_id"), int) and ev["time"].endswith("Z")
        if ev["module"] == "system":
            assert isinstance(ev["signature_id"], int) and ev["severity"] == 3 and ev["name"]
        else:
            assert isinstance(ev["host_id"], int) and "act" in ev


def test_rules_can_route_on_the_envelope_and_the_original_properties():
    specs = Plugins(entry_points=False).option_specs()
    text = """
output o { type = "stdout" }
route by_topic { when sns.topic_arn == "arn:aws:sns:us-east-1:123456789012:ds" and sns.index == 0; to o }
route by_property { when ext["HostInstanceID"] == "i-1" and time startswith "2020-"; to o }
route everything { to o }
"""
    table = compile_routes(load_config_text(text, "t.conf", specs))
    body = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ds",
        "Message": json.dumps(
            [
                {
                    "EventType": "PacketLog",
                    "HostInstanceID": "i-1",
                    "LogDate": "2020-04-08T18:12:11.000Z",
                }
            ]
            * 2
        ),
    }
    first, second = parse_sns_document(json.dumps(body))
    assert table.decide(first).routes == ("by_topic",)
    assert table.decide(second).routes == ("by_property",)
    (bare,) = parse_sns_document(json.dumps([{"EventType": "PacketLog"}]))
    assert table.decide(bare).routes == ("everything",)
