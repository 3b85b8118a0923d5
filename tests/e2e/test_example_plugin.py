"""examples/plugin-assets as a user gets it: pip-installed, its tests green, the daemon using it.

A venv (``--system-site-packages``) gets a real, non-editable install of a copy of the example;
the example's own tests run with that venv's python; then the daemon, started from that venv,
finds the plugin through its entry point, routes the built-in sample events through a rule
that calls ``asset_criticality(host)`` and ``asset_owner(host)`` (the inventory named by
``DSROUTER_ASSETS``), and opens issues on a real HTTP server in this test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dsrouter.samples import sample_lines

from ..cli.test_scaffold import make_venv, pip_install
from .conftest import BANNER, wait_for_lines

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin-assets"
TOKEN = "ghp_e2eTOKEN0123456789"

ASSETS = """\
host,owner,criticality
web-01,alice,High
db-02,bob,low
"""

CONFIG = """\
settings {{ data_dir = "data" }}
input dsm {{ type = "tcp", listen = "127.0.0.1:0" }}
output tickets {{
  type   = "github_issue"
  repo   = "secops/incidents"
  token  = env("E2E_GITHUB_TOKEN")
  url    = "{url}"
  labels = ["deep-security", "e2e"]
  flush  = 100ms
}}
output archive {{ type = "file", path = "all.jsonl" }}

route tickets {{
  when severity >= 8 and asset_criticality(host) in ["high", "critical"]
  set owner = asset_owner(host)
  set criticality = asset_criticality(host)
  throttle 1 per 1h by host, signature_id
  to tickets
  continue
}}
route everything {{ to archive }}
"""

DB_02 = (
    "<134>Nov 27 23:18:32 db-02 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
    "Generic SQLi|9|cn1=7 cn1Label=Host ID dvchost=db-02 src=203.0.113.9 act=Reset"
)


class Issues:
    """``POST /api/v3/repos/OWNER/NAME/issues`` on 127.0.0.1: records each issue, answers 201."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner.lock:
                    owner.received.append(
                        {"path": self.path, "headers": dict(self.headers), **json.loads(body)}
                    )
                    number = len(owner.received)
                answer = json.dumps({"number": number}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"

    def issues(self) -> list[dict]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A venv with a copy of examples/plugin-assets pip-installed (not editable)."""
    root = tmp_path_factory.mktemp("example")
    source = root / "plugin-assets"
    skip = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache")
    shutil.copytree(EXAMPLE, source, ignore=skip)
    python = make_venv(root / "venv")
    pip_install(python, str(source))
    return python, source


@pytest.fixture
def issues():
    server = Issues()
    yield server
    server.close()


def _run(python, *args, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def test_the_install_is_real_and_the_examples_own_tests_pass(venv, tmp_path):
    python, source = venv
    where = _run(
        python, "-c", "import dsrouter_assets; print(dsrouter_assets.__file__)", cwd=tmp_path
    )
    assert "site-packages" in where.stdout and str(source) not in where.stdout, where
    tests = str(source / "tests")
    done = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and " failed" not in done.stdout


def test_check_passes_and_points_at_a_typo_in_the_outputs_options(venv, tmp_path):
    python, _ = venv
    env = {**os.environ, "E2E_GITHUB_TOKEN": TOKEN}
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(CONFIG.format(url="https://ghe.example.com/api/v3"))
    done = _run(python, "-m", "dsrouter", "check", "-c", str(conf), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "OK — 1 input(s), 2 output(s), 2 route(s)" in done.stdout
    conf.write_text(conf.read_text().replace("labels =", "lables ="))
    done = _run(python, "-m", "dsrouter", "check", "-c", str(conf), cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert f"{conf}:8:3: error[E204]: unknown option 'lables' in output 'tickets'" in done.stderr
    assert "did you mean 'labels'?" in done.stderr and TOKEN not in done.stderr


def test_the_readmes_configuration_checks_and_its_test_passes(venv, tmp_path):
    python, source = venv
    readme = (source / "README.md").read_text()
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", readme, re.S | re.M)
    [text] = [body for lang, body in blocks if lang == "" and "route " in body]
    conf = tmp_path / "readme.conf"
    conf.write_text(text)
    env = {**os.environ, "GITHUB_TOKEN": TOKEN, "DSROUTER_ASSETS": str(source / "assets.csv")}
    done = _run(python, "-m", "dsrouter", "check", "-c", str(conf), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    done = _run(python, "-m", "dsrouter", "test", "-c", str(conf), cwd=tmp_path, env=env)
    assert done.returncode == 0 and "1 passed, 0 failed" in done.stdout, done.stdout


def test_the_daemon_from_the_venv_opens_tickets_for_critical_hosts(venv, issues, tmp_path):
    python, _ = venv
    (tmp_path / "assets.csv").write_text(ASSETS)
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(CONFIG.format(url=issues.url))
    env = {
        **os.environ,
        "DSROUTER_ASSETS": str(tmp_path / "assets.csv"),
        "E2E_GITHUB_TOKEN": TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [str(python), "-m", "dsrouter", "run", "-c", str(conf)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner, port = _banner(proc)
        assert any(
            "output tickets  issues in secops/incidents at http://127.0.0.1:" in line
            for line in banner
        ), banner
        (tmp_path / "db02.log").write_text(DB_02 + "\n")
        target = f"127.0.0.1:{port}"
        for args in (["--sample"], ["--sample"], [str(tmp_path / "db02.log")]):
            sent = _run(python, "-m", "dsrouter", "send", target, *args, cwd=tmp_path, timeout=60)
            assert sent.returncode == 0, sent.stderr
        wait_for_lines("data/all.jsonl", 2 * len(sample_lines()) + 1, tmp_path, timeout=30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # a clean stop drains every queued ticket
    assert proc.returncode == 0, err
    assert TOKEN not in err and TOKEN not in "\n".join(banner)

    got = issues.issues()
    # The samples' two severity-8 events on web-01.example.com (inventory: web-01, high); the
    # second round is throttled; db-02 is low criticality; the rest are below severity 8.
    assert sorted(i["title"] for i in got) == [
        "[DS intrusion_prevention] Generic Cross Site Scripting(XSS) Prevention on "
        "web-01.example.com (severity 8)",
        "[DS log_inspection] Default Rule: Multiple SSH authentication failures on "
        "web-01.example.com (severity 8)",
    ]
    for issue in got:
        assert issue["path"] == "/api/v3/repos/secops/incidents/issues"
        assert issue["labels"] == ["deep-security", "e2e"]
        headers = {k.lower(): v for k, v in issue["headers"].items()}
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert headers["accept"] == "application/vnd.github+json"
        assert "| owner | `alice` |" in issue["body"]
        assert "| criticality | `high` |" in issue["body"]
        assert "| event_id | `" in issue["body"]
    archived = {e["event_id"] for e in wait_for_lines("data/all.jsonl", 0, tmp_path)}
    ticketed = {i["body"].split("| event_id | `")[1].split("`")[0] for i in got}
    assert len(ticketed) == 2 and ticketed <= archived  # the very events the daemon received


def _banner(proc: subprocess.Popen, timeout: float = 30.0) -> tuple[list[str], int]:
    """The start-up banner's lines and the TCP input's port."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    port = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"daemon exited early: {proc.stderr.read()}")
        lines.append(line.rstrip("\n"))
        m = BANNER.match(lines[-1])
        if m and m.group(1) == "dsm":
            port = int(m.group(4))
        if line.startswith("Stop with"):
            assert port is not None, lines
            return lines, port
    raise AssertionError(f"no start-up banner: {lines}")
