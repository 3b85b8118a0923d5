"""The windows_eventlog output on Linux: the mapping, the limits, the options, the refusal.

What reaches ``ReportEventW`` on real Windows CPython + pywin32 is tested under Wine
(``tests/windows/test_eventlog_wine.py``). Wine's ReportEventW never fails, so the
classification of its errors is tested here against a stand-in for the three pywin32 calls.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsrouter.api import OutputContext, PartialFailure, PermanentFailure, RetryLater
from dsrouter.cli import main
from dsrouter.ds import parse_batch
from dsrouter.ds.catalog import MODULES
from dsrouter.plugin import Plugins
from dsrouter.plugins import eventlog_format as fmt
from dsrouter.plugins.eventlog import PERMANENT_ERRORS
from dsrouter.samples import sample_lines

REPO = Path(__file__).resolve().parents[2]
LAYOUT = fmt.Layout()


def samples() -> dict[int, dict]:
    events = parse_batch(
        [x.encode() for x in sample_lines()], "u", "192.0.2.1", "2026-01-01T00:00:00+00:00"
    )
    return {ev["signature_id"]: ev for ev in events}


# ---- the mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(0, 4), (3, 4), (4, 2), (6, 2), (7, 2), (8, 1), (10, 1), (None, 4), ("8", 4), (True, 4)],
    ids=lambda v: repr(v),
)
def test_severity_maps_to_the_event_type_table(severity, expected):
    assert fmt.event_type({"severity": severity}, LAYOUT) == expected


def test_severity_thresholds_are_options_and_an_unparsed_message_is_a_warning():
    strict = fmt.Layout(error_severity=6, warning_severity=3)
    assert [fmt.event_type({"severity": s}, strict) for s in (2, 3, 5, 6)] == [4, 2, 2, 1]
    never = fmt.Layout(error_severity=11, warning_severity=11)
    assert fmt.event_type({"severity": 10}, never) == fmt.INFORMATION
    assert fmt.event_type({"parse_error": "not syslog"}, LAYOUT) == fmt.WARNING


def test_every_catalogue_module_has_its_own_category():
    assert set(fmt.CATEGORIES) == set(MODULES)
    assert sorted(fmt.CATEGORIES.values()) == list(range(len(MODULES)))
    assert fmt.category({"module": "firewall"}) == 3
    assert fmt.category({"module": "made_up"}) == fmt.category({}) == 0


@pytest.mark.parametrize(
    ("module", "signature_id", "base", "expected"),
    [
        ("intrusion_prevention", 1000552, 0, 4552),
        ("firewall", 21, 0, 3021),
        ("anti_malware", 4000000, 0, 1000),
        ("system", 600, 0, 9600),
        ("system", "600", 0, 9600),
        ("unknown", None, 0, 0),
        ("log_inspection", "not a number", 0, 6000),
        ("device_control", 7001200, 50000, 58200),
    ],
)
def test_event_id_is_base_plus_category_thousands_plus_signature_low_digits(
    module, signature_id, base, expected
):
    ev = {"module": module, "signature_id": signature_id}
    assert fmt.event_id(ev, fmt.Layout(event_id_base=base)) == expected


@given(
    module=st.sampled_from(MODULES),
    sig=st.one_of(st.none(), st.integers(min_value=0, max_value=2**63), st.text(max_size=12)),
    base=st.integers(min_value=0, max_value=fmt.MAX_EVENT_ID_BASE),
)
def test_event_ids_always_fit_16_bits_with_no_qualifier_bits(module, sig, base):
    eid = fmt.event_id({"module": module, "signature_id": sig}, fmt.Layout(event_id_base=base))
    assert 0 <= eid <= 0xFFFF


def test_strings_have_fixed_positions_after_the_readable_message():
    ips = fmt.render(samples()[1000552], LAYOUT)
    assert (ips.type, ips.category, ips.event_id, ips.data) == (fmt.ERROR, 4, 4552, None)
    assert ips.strings[1:] == (
        "Generic Cross Site Scripting(XSS) Prevention",
        "8",
        "intrusion_prevention",
        "1000552",
        "web-01.example.com",
        "203.0.113.9",
        "51234",
        "192.0.2.15",
        "80",
        "Reset",
        "",  # event_id: stamped by the daemon's pipeline
        "2026-01-01T00:00:00+00:00",
    )
    message = ips.strings[0].split("\r\n")
    assert message[:4] == [
        "Generic Cross Site Scripting(XSS) Prevention",
        "",
        "Severity: 8",
        "Module: intrusion_prevention",
    ]
    assert "Signature ID: 1000552" in message and "Action: Reset" in message
    assert "  cn1 (Host ID): 12" in message  # a custom slot is shown with its label
    assert not any(line.startswith(("  raw", "  cn1Label", "  syslog")) for line in message)


def test_an_event_without_some_fields_keeps_every_position():
    rec = fmt.render(samples()[600], LAYOUT)
    assert len(rec.strings) == 1 + len(fmt.FIELDS)
    assert rec.strings[7:11] == ("", "", "", "")  # spt, dst, dpt, act
    assert "Destination:" not in rec.strings[0]


def test_an_unparsed_message_is_shown_as_received():
    [ev] = parse_batch([b"hello there"], "u", "192.0.2.7", "2026-01-01T00:00:00+00:00")
    rec = fmt.render(ev, LAYOUT)
    assert (rec.type, rec.category, rec.event_id) == (fmt.WARNING, 0, 0)
    assert rec.strings[0].startswith("Unparsed message from 192.0.2.7\r\n")
    assert rec.strings[0].endswith("Message as received: hello there")


def test_raw_data_is_the_message_as_received_capped():
    ev = samples()[21]
    assert fmt.render(ev, fmt.Layout(raw_data=True)).data == ev["raw"].encode()
    assert (
        fmt.render(ev, fmt.Layout(raw_data=True, max_raw_data=16)).data == ev["raw"].encode()[:16]
    )
    assert fmt.render(ev, fmt.Layout(raw_data=True, max_raw_data=0)).data is None


def test_sender_text_cannot_end_a_string_early_or_pull_in_parameter_messages():
    rec = fmt.render({"name": "a\x00b %%1234 50%% %1"}, LAYOUT)
    assert rec.strings[1] == "a\ufffdb %\u200b%1234 50%% %1"
    assert rec.strings[0].startswith(rec.strings[1])


# ---- the limits ----------------------------------------------------------------------------


def test_a_long_message_is_cut_to_max_message_with_a_marker():
    rec = fmt.render({"name": "x", "msg": "y" * 50_000}, fmt.Layout(max_message=1000))
    assert len(rec.strings[0]) == 1000
    assert rec.strings[0].endswith(" characters in all]")
    assert (
        re.search(r"cut: ([\d,]+) characters", rec.strings[0]).group(1)
        == f"{len(fmt.message_text({'name': 'x', 'msg': 'y' * 50_000})):,}"
    )


def test_every_string_and_the_whole_record_stay_within_the_api_limits():
    huge = {key: "z" * 40_000 for key, _ in fmt.FIELDS} | {"other": "w" * 40_000}
    rec = fmt.render(huge, fmt.Layout(max_message=fmt.MAX_STRING))
    assert all(fmt.units(s) <= fmt.MAX_FIELD for s in rec.strings[1:])
    assert sum(fmt.units(s) for s in rec.strings) <= fmt.MAX_TOTAL
    assert fmt.units(rec.strings[0]) == fmt.MAX_TOTAL - len(fmt.FIELDS) * fmt.MAX_FIELD


def test_cutting_counts_utf16_units_and_never_splits_a_surrogate_pair():
    text = "😀" * 600  # two UTF-16 code units each
    out = fmt.cut(text, 1001)
    assert fmt.units(out) <= 1001
    assert out.encode("utf-16-le").decode("utf-16-le") == out
    assert out.startswith("😀" * 10) and "characters in all]" in out
    assert fmt.cut("short", 10) == "short"


# ---- the options through `dsrouter check` --------------------------------------------------


def _conf(tmp_path, options: str) -> str:
    path = tmp_path / "dsrouter.conf"
    path.write_text(
        f'settings {{ data_dir = "{tmp_path / "data"}" }}\n'
        'input u { type = "udp", listen = "127.0.0.1:0" }\n'
        f'output ev {{ type = "windows_eventlog"{options} }}\n'
        "route all { to ev }\n"
    )
    return str(path)


def test_check_accepts_the_defaults_and_every_option(tmp_path, capsys):
    assert main(["check", "-c", _conf(tmp_path, "")]) == 0
    every = (
        ', source = "DS Relay", log = "Deep Security", event_id_base = 55536, error_severity = 9,'
        " warning_severity = 5, max_message = 31839, raw_data = true, max_raw_data = 60KiB"
    )
    assert main(["check", "-c", _conf(tmp_path, every)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (', source = "a\\\\b"', "invalid value for option 'source'"),
        (', source = "  "', "must not be empty"),
        (', log = "Security"', "cannot be written to the Security log"),
        (", event_id_base = 55537", "event IDs must fit in 16 bits"),
        (", error_severity = 12", "expected a DS severity from 0 to 10"),
        (", max_message = 100", "expected 256 to 31839 characters"),
        (", max_raw_data = 64KiB", "expected at most 61440 bytes"),
        (', raw_data = "yes"', "expected true or false"),
    ],
)
def test_check_rejects_bad_options_with_a_clear_message(tmp_path, capsys, options, message):
    assert main(["check", "-c", _conf(tmp_path, options)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_docs_example_config_checks(tmp_path, capsys):
    text = (REPO / "docs" / "outputs" / "windows_eventlog.md").read_text()
    example = re.search(r"```\n(.*?)```", text, re.S).group(1)
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(example)
    assert main(["check", "-c", str(conf)]) == 0, capsys.readouterr().err


def test_docs_tables_match_the_code():
    text = (REPO / "docs" / "outputs" / "windows_eventlog.md").read_text()
    for module, number in fmt.CATEGORIES.items():
        low = number * fmt.ID_SPAN
        assert re.search(rf"\| {number} \| `{module}` \| {low}[–-]{low + 999} \|", text), module
    for n, (key, _) in enumerate(fmt.FIELDS, 2):
        assert f"| %{n} | `{key}` |" in text, key


# ---- off Windows ---------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="the refusal is what non-Windows systems see")
def test_the_daemon_refuses_to_start_on_linux_with_a_clear_message(tmp_path, capsys):
    assert main(["run", "-c", _conf(tmp_path, "")]) == 3
    err = capsys.readouterr().err
    assert "dsrouter: cannot start: output 'ev' (windows_eventlog) failed to start" in err
    assert "runs on Windows only (this system is linux)" in err
    assert "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="the refusal is what non-Windows systems see")
@pytest.mark.parametrize("action", ["install-source", "remove-source"])
def test_eventlog_commands_refuse_on_linux_in_one_line(capsys, action):
    assert main(["eventlog", action, "--source", "Deep Security"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "runs on Windows only" in err


def test_it_is_a_builtin_output_type():
    kind = Plugins(entry_points=False).outputs["windows_eventlog"]
    assert kind.plugin == "eventlog" and kind.default_queue == "memory"


# ---- delivery outcomes (the pywin32 calls stood in for: Wine's never fail) -----------------


class WinError(Exception):
    """What pywintypes.error carries: winerror, funcname, strerror."""

    def __init__(self, winerror: int, strerror: str = "failed") -> None:
        super().__init__(winerror, "ReportEvent", strerror)
        self.winerror, self.strerror = winerror, strerror


class StandIn:
    """Records calls; ``fail`` maps a call number (0-based) to the error it raises."""

    def __init__(self, fail: dict[int, Exception] | None = None, register_fails: int = 0) -> None:
        self.fail, self.register_fails = fail or {}, register_fails
        self.written: list[tuple] = []
        self.calls = self.registered = self.deregistered = 0

    def register(self, source):
        if self.register_fails:
            self.register_fails -= 1
            raise WinError(1717, "The interface is unknown.")
        self.registered += 1
        return f"handle-{self.registered}"

    def report(self, handle, rec):
        n, self.calls = self.calls, self.calls + 1
        if n in self.fail:
            raise self.fail[n]
        self.written.append((handle, rec.event_id))

    def deregister(self, handle):
        self.deregistered += 1

    def error_code(self, exc):
        return getattr(exc, "winerror", None)


def _output(api: StandIn):
    kind = Plugins(entry_points=False).outputs["windows_eventlog"]
    out = kind.factory(
        "ev", {"source": "Deep Security", "log": "Application"}, OutputContext(Path("."), Path("."))
    )
    out.api = api
    return out


EVENTS = [{"module": "firewall", "signature_id": n, "severity": 5} for n in range(4)]


def test_a_batch_is_written_in_order_through_one_handle():
    api = StandIn()
    out = _output(api)
    out.send(EVENTS)
    assert api.written == [("handle-1", 3000 + n) for n in range(4)]
    assert out.describe() == 'Windows Event Log "Application", source "Deep Security"'


@pytest.mark.parametrize("code", sorted(PERMANENT_ERRORS))
def test_an_event_the_api_refuses_is_dead_lettered_alone(code):
    api = StandIn(fail={1: WinError(code, "The parameter is incorrect.")})
    with pytest.raises(PartialFailure) as info:
        _output(api).send(EVENTS)
    assert set(info.value.rejected) == {1} and info.value.retry == ()
    assert info.value.rejected[1].response == {"winerror": code, "error": PERMANENT_ERRORS[code]}
    assert [eid for _, eid in api.written] == [3000, 3002, 3003]


def test_a_single_refused_event_is_a_permanent_failure():
    with pytest.raises(PermanentFailure, match=r"WinError 87") as info:
        _output(StandIn(fail={0: WinError(87)})).send(EVENTS[:1])
    assert info.value.response == {"winerror": 87, "error": "ERROR_INVALID_PARAMETER"}


def test_a_transient_error_first_retries_the_batch_with_a_fresh_handle():
    api = StandIn(fail={0: WinError(1722, "The RPC server is unavailable.")})
    out = _output(api)
    with pytest.raises(RetryLater, match=r"WinError 1722\] The RPC server is unavailable"):
        out.send(EVENTS)
    assert api.deregistered == 1 and out.handle is None
    out.send(EVENTS)
    assert api.written == [("handle-2", 3000 + n) for n in range(4)]


def test_a_transient_error_mid_batch_retries_from_there_and_keeps_what_was_refused():
    api = StandIn(fail={0: WinError(87), 2: WinError(6, "The handle is invalid.")})
    with pytest.raises(PartialFailure) as info:
        _output(api).send(EVENTS)
    assert set(info.value.rejected) == {0}
    assert info.value.retry == (2, 3)
    assert api.written == [("handle-1", 3001)]


def test_an_unknown_error_counts_as_transient():
    api = StandIn(fail={0: WinError(31337)})
    with pytest.raises(RetryLater):
        _output(api).send(EVENTS)


def test_a_failed_registration_is_retried_later():
    api = StandIn(register_fails=1)
    out = _output(api)
    with pytest.raises(RetryLater, match="RegisterEventSource failed"):
        out.send(EVENTS)
    out.send(EVENTS)
    assert len(api.written) == 4


def test_an_event_that_cannot_be_rendered_is_dead_lettered_alone():
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

    api = StandIn()
    with pytest.raises(PartialFailure) as info:
        _output(api).send([EVENTS[0], {"name": Unprintable()}, EVENTS[2]])
    assert set(info.value.rejected) == {1}
    assert "cannot render event" in str(info.value.rejected[1])
    assert len(api.written) == 2


def test_reopen_and_close_release_the_handle():
    api = StandIn()
    out = _output(api)
    out.send(EVENTS[:1])
    out.reopen()
    out.send(EVENTS[:1])
    out.close()
    assert (api.registered, api.deregistered) == (2, 2)
    with pytest.raises(RetryLater, match="not open"):
        out.send(EVENTS[:1])


def test_access_denied_tells_to_run_the_command_elevated():
    from argparse import Namespace

    from dsrouter.cli.eventlog import _explain

    args = Namespace(action="install-source")
    text = _explain(WinError(5, "Access is denied."), args)
    assert "access denied" in text and "Run as administrator" in text
    assert _explain(WinError(1450, "Insufficient resources."), args).endswith(
        "[WinError 1450] Insufficient resources."
    )
