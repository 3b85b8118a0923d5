"""The github_issue output against a real HTTP server that speaks the Issues API shape."""

from __future__ import annotations

import contextlib
import ssl
import time
from pathlib import Path

import pytest
from dsrouter_assets import dsrouter_register_outputs
from dsrouter_assets.tickets import OPTIONS, IssueOutput, wait_for

from dsrouter.api import OutputContext, PartialFailure, PermanentFailure, RetryLater
from dsrouter.testing import Destination, OutputContract, literal

EVENT = {
    "module": "intrusion_prevention",
    "name": "Generic SQLi",
    "host": "web-01",
    "severity": 8,
    "signature_id": 1000552,
    "src": "203.0.113.9",
    "act": "Reset",
    "event_id": "e-1",
    "raw": "CEF:0|Trend Micro|Deep Security Agent|20|1000552|Generic SQLi|8|dvchost=web-01",
}


class IssuesDestination(Destination):
    def __init__(self, server) -> None:
        self.server = server

    def delivered_ids(self) -> list[str]:
        return self.server.event_ids()

    @contextlib.contextmanager
    def fail(self, mode: str):
        self.server.failing = (503, {}) if mode == "transient" else (422, {})
        try:
            yield
        finally:
            self.server.failing = None


class TestGitHubIssueContract(OutputContract):
    type_name = "github_issue"
    large_batch = 300  # one request per event: the kit's 2000 would take seconds for no more

    @pytest.fixture
    def destination(self, github):
        yield IssuesDestination(github)

    def options(self, destination) -> dict:
        return {
            "repo": destination.server.repo,
            "token": destination.server.token,
            "url": destination.server.url,
            "labels": ["deep-security", "triage"],
            "timeout": literal("5s"),
        }


@pytest.fixture
def output(github, tmp_path):
    opened: list[IssueOutput] = []

    def make(**options) -> IssueOutput:
        opts = {"repo": github.repo, "token": github.token, "url": github.url, **options}
        out = IssueOutput("tickets", opts, OutputContext(tmp_path, tmp_path))
        out.open()
        opened.append(out)
        return out

    yield make
    for out in opened:
        out.close()


def _events(n: int) -> list[dict]:
    return [{**EVENT, "event_id": f"e-{i}"} for i in range(n)]


def test_the_issue_has_the_title_body_labels_and_headers_of_the_api(github, output):
    event = {**EVENT, "owner": "alice", "criticality": "high"}
    output(labels=["deep-security", "triage"]).send([event])
    [issue] = github.issues
    assert issue["title"] == "[DS intrusion_prevention] Generic SQLi on web-01 (severity 8)"
    assert issue["labels"] == ["deep-security", "triage"]
    assert "| owner | `alice` |" in issue["body"]
    assert "| criticality | `high` |" in issue["body"]
    assert "| event_id | `e-1` |" in issue["body"]
    assert issue["headers"]["authorization"] == f"Bearer {github.token}"
    assert issue["headers"]["accept"] == "application/vnd.github+json"
    assert issue["headers"]["content-type"] == "application/json"
    assert github.requests[0]["path"] == "/api/v3/repos/secops/incidents/issues"


def test_owner_and_criticality_rows_only_when_a_rule_set_them(github, output):
    output().send([EVENT])
    body = github.issues[0]["body"]
    assert "owner" not in body and "criticality" not in body and "| host | `web-01` |" in body


def test_event_text_cannot_inject_markdown_or_mentions(github, output):
    hostile = {**EVENT, "name": "x\n# @org/team `y`", "act": "a|b"}
    output().send([hostile])
    issue = github.issues[0]
    assert "\n" not in issue["title"]
    assert issue["title"].startswith("[DS intrusion_prevention] x # @org/team")
    assert "| action | `a\\|b` |" in issue["body"]
    assert "| event | `x # @org/team 'y'` |" in issue["body"]


def test_a_batch_is_one_issue_per_event_in_order(github, output):
    output().send(_events(3))
    assert github.event_ids() == ["e-0", "e-1", "e-2"]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_later(github, output, status):
    github.answers = [(status, {})]
    with pytest.raises(RetryLater):
        output().send([EVENT])
    assert github.issues == []


def test_429_honours_retry_after(github, output):
    github.answers = [(429, {"Retry-After": "7"})]
    with pytest.raises(RetryLater) as info:
        output().send([EVENT])
    assert info.value.retry_after == 7


def test_403_rate_limit_waits_until_the_reset(github, output):
    reset = int(time.time()) + 30
    github.answers = [(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})]
    with pytest.raises(RetryLater) as info:
        output().send([EVENT])
    assert 25 <= info.value.retry_after <= 30


def test_a_secondary_rate_limit_without_a_time_waits_a_minute(github, output):
    github.answers = [(429, {})]
    with pytest.raises(RetryLater) as info:
        output().send([EVENT])
    assert info.value.retry_after == 60


@pytest.mark.parametrize("status", [401, 403, 404, 410, 422])
def test_client_errors_are_permanent_with_the_response(github, output, status):
    github.answers = [(status, {})]
    with pytest.raises(PermanentFailure) as info:
        output().send([EVENT])
    assert info.value.response["status"] == status
    assert f"scripted {status}" in info.value.response["body"]


def test_a_wrong_token_is_401_and_never_shown(github, output):
    out = output(token="wrong-token-abcdef")
    with pytest.raises(PermanentFailure) as info:
        out.send([EVENT])
    assert info.value.response["status"] == 401 and "Bad credentials" in str(info.value)
    assert "wrong-token" not in out.describe()
    assert out.describe() == f"issues in {github.repo} at {github.url}"


def test_a_failure_midway_retries_only_the_events_not_yet_ticketed(github, output):
    out = output()
    events = _events(4)
    github.answers = [None, None, (503, {"Retry-After": "2"})]
    with pytest.raises(PartialFailure) as info:
        out.send(events)
    assert info.value.retry == (2, 3) and info.value.rejected == {}
    assert info.value.retry_after == 2
    assert github.event_ids() == ["e-0", "e-1"]
    out.send([events[i] for i in info.value.retry])
    assert github.event_ids() == ["e-0", "e-1", "e-2", "e-3"]  # none ticketed twice


def test_a_transient_failure_on_the_first_event_retries_the_whole_batch(github, output):
    github.answers = [(502, {})]
    with pytest.raises(RetryLater):
        output().send(_events(3))
    assert github.event_ids() == [] and len(github.requests) == 1


def test_a_rejected_event_midway_is_dead_lettered_alone(github, output):
    github.answers = [None, (422, {}), None]
    with pytest.raises(PartialFailure) as info:
        output().send(_events(3))
    assert list(info.value.rejected) == [1] and info.value.retry == ()
    assert info.value.rejected[1].response["status"] == 422
    assert github.event_ids() == ["e-0", "e-2"]


def test_a_wrong_repository_midway_rejects_the_rest_without_asking_again(github, output):
    github.answers = [None]
    github.failing = (404, {})
    with pytest.raises(PartialFailure) as info:
        output().send(_events(4))
    assert sorted(info.value.rejected) == [1, 2, 3] and info.value.retry == ()
    assert info.value.rejected[3].response["status"] == 404
    assert len(github.requests) == 2 and github.event_ids() == ["e-0"]


def test_a_wrong_token_on_the_first_event_fails_the_whole_batch_at_once(github, output):
    with pytest.raises(PermanentFailure):
        output(token="nope-nope-nope").send(_events(3))
    assert len(github.requests) == 1


def test_connection_refused_is_transient(github, output):
    out = output()
    github.close()
    with pytest.raises(RetryLater):
        out.send([EVENT])


def test_the_token_is_redacted_from_an_echoed_response(github, output):
    out = output()
    github.answers, github.echo = [(400, {})], True
    with pytest.raises(PermanentFailure) as info:
        out.send([EVENT])
    token = github.token
    assert token not in str(info.value) and token not in info.value.response["body"]
    assert "[redacted]" in info.value.response["body"]


def test_https_with_the_ca_option(tmp_path, issue_servers):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = issue_servers()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)  # the server's certificate, by the test CA
    server.server.socket = tls.wrap_socket(server.server.socket, server_side=True)
    url = server.url.replace("http://", "https://")
    opts = {"repo": server.repo, "token": server.token, "url": url, "ca": "ca.pem"}
    out = IssueOutput("tickets", opts, OutputContext(tmp_path, tmp_path))
    out.open()
    out.send([EVENT])
    out.close()
    assert server.event_ids() == ["e-1"]
    out = IssueOutput("tickets", {**opts, "ca": None}, OutputContext(tmp_path, tmp_path))
    out.open()
    with pytest.raises(RetryLater, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
        out.send([EVENT])  # the system's CAs do not know the test CA
    out.close()


def test_a_missing_ca_file_refuses_to_open(tmp_path):
    opts = {"repo": "secops/incidents", "token": "t", "ca": "missing.pem"}
    out = IssueOutput("tickets", opts, OutputContext(tmp_path, tmp_path))
    with pytest.raises(PermanentFailure, match="ca: cannot load"):
        out.open()


def test_options_are_checked_before_anything_runs():
    by_name = {o.name: o for o in OPTIONS}
    assert by_name["repo"].check("secops/incidents") == ("secops/incidents", None)
    assert "OWNER/NAME" in by_name["repo"].check("incidents")[1]
    assert "OWNER/NAME" in by_name["repo"].check("a/b/c")[1]
    assert by_name["url"].check("ftp://x")[1] is not None
    assert by_name["url"].check("https://u:p@ghe.example.com/api/v3")[1] is not None
    assert by_name["labels"].check([3, "bug"]) == ([3, "bug"], None)
    assert by_name["token"].secret and by_name["token"].required


def test_wait_for_reads_retry_after_dates_and_caps_at_an_hour():
    now = time.time()
    assert wait_for({"retry-after": "120"}, now) == 120
    assert wait_for({"retry-after": "999999"}, now) == 3600
    assert wait_for({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now) == 0
    assert wait_for({"x-ratelimit-remaining": "5", "x-ratelimit-reset": "1"}, now) is None
    assert wait_for({}, now) is None


def test_the_type_is_registered_with_a_disk_queue():
    found: list = []
    dsrouter_register_outputs(register=found.append)
    [kind] = found
    assert kind.name == "github_issue" and kind.default_queue == "disk"
    assert Path(kind.factory.__code__.co_filename).name == "__init__.py"
