"""Secret option values: never in `dsrouter check` output, and W201 for a world-readable file.

The webhook output's ``url``, ``bearer_token``, ``basic_auth`` and ``headers`` are secret
options. Written as literals they are masked in every quoted source line (whatever the error
on that line, syntax errors included); in a file every user can read they draw W201 from
``check`` and from the daemon at start-up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import pytest

from dsrouter.cli.main import main

ROUTE = "route _unmatched { to p }\n"
posix = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@posix
@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, False), (0o600, False)])
def test_inline_secret_in_a_world_readable_file_warns(mode, warned, conf, capsys):
    path = conf('output p { type = "webhook", url = "https://hooks.example.com/T0KEN" }\n' + ROUTE)
    os.chmod(path, mode)
    code, out, err = run(capsys, "check", "-c", path)
    assert code == 0
    assert ("warning[W201]: secret option 'url' of output 'p'" in err) is warned
    assert f"{1 if warned else 0} warning(s)" in out
    assert "T0KEN" not in out + err


@posix
def test_secrets_from_env_or_file_draw_no_warning(conf, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DSR_URL", "https://hooks.example.com/T0KEN")
    (tmp_path / "token").write_text("T0KEN-2\n")
    text = 'output p { type = "webhook", url = env("DSR_URL"), bearer_token = file("token") }\n'
    path = conf(text + ROUTE)
    os.chmod(path, 0o644)
    code, out, err = run(capsys, "check", "-c", path)
    assert (code, err) == (0, "") and "0 warning(s)" in out


MULTI = """\
output p {
  type = "webhook", url = "https://hooks.example.com/T0KEN-1", bearer_token = "T0KEN-2", bogus = 1
  headers = ["X-Key: T0KEN-3",
             "X-Other: T0KEN-4"], timout = 3s
}
"""


@pytest.mark.parametrize(
    "text",
    [
        MULTI + ROUTE,
        'output p { type = "webhook", url = "https://h/T0KEN-5", batch = 2x }\n' + ROUTE,
        'output p { type = "webhook", basic_auth = "user:T0KEN-6" url = }\n',
        'output p { type = "webhook", url = "https://h/x", bearer_token = ["T0KEN-7"] }\n' + ROUTE,
    ],
    ids=["semantic-errors-on-secret-lines", "syntax-error", "unterminated", "wrong-kind"],
)
def test_secret_values_never_appear_in_check_output(text, conf, capsys):
    path = conf(text)
    for argv in (["check", "-c", path], ["check", "--json", "-c", path]):
        code, out, err = run(capsys, *argv)
        assert code == 1 and ("error[E" in err or '"valid":false' in out)
        assert "T0KEN" not in out + err, out + err


def test_masked_excerpt_keeps_the_caret_under_the_error(conf, capsys):
    line = 'output p { type = "webhook", url = "https://h/T0KEN", bogus = 1 }'
    code, _, err = run(capsys, "check", "-c", conf(line + "\n" + ROUTE))
    assert code == 1
    lines = err.splitlines()
    at = next(i for i, x in enumerate(lines) if "error[E204]" in x)
    excerpt, caret = lines[at + 1 : at + 3]
    assert excerpt == '  output p { type = "webhook", url = "***************", bogus = 1 }'
    assert caret.index("^") == excerpt.index("bogus")


@posix
def test_daemon_start_warns_about_a_world_readable_secret(tmp_path):
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(
        'settings { data_dir = "data" }\n'
        'input udp_in { type = "udp", listen = "127.0.0.1:0" }\n'
        'output p { type = "webhook", url = "http://127.0.0.1:9/T0KEN" }\n' + ROUTE
    )
    os.chmod(conf, 0o644)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsrouter", "run", "-c", str(conf)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the daemon exited before its banner"
            if line.startswith(b"Stop with"):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    text = err.decode()
    assert "warning[W201]: secret option 'url' of output 'p'" in text
    assert "T0KEN" not in text
    assert all("T0KEN" not in str(orjson.loads(x)) for x in err.splitlines() if x[:1] == b"{")


def test_a_failing_expectation_shows_env_by_its_source(tmp_path, capsys, monkeypatch):
    from dsrouter.cli.main import main as cli

    monkeypatch.setenv("SECRETX", "topsecret")
    conf = tmp_path / "t.conf"
    conf.write_text(
        'output o { type = "stdout" }\nroute all { to o }\n'
        'test "t" {\n  input "<134>Nov 27 23:18:32 web-01 CEF:0|Trend Micro|Deep Security Agent|'
        '20.0|1000552|XSS|8|dvchost=web-01"\n  expect host == env("SECRETX")\n}\n'
    )
    junit = tmp_path / "j.xml"
    assert cli(["test", "-c", str(conf), "--junit", str(junit)]) == 1
    out = capsys.readouterr()
    assert 'env("SECRETX")' in out.out + out.err
    assert "topsecret" not in out.out + out.err + junit.read_text()
