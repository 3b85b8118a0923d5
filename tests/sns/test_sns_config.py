"""The sns input's options: `dsrouter check` explains bad values, `run` refuses contradictions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dsrouter.cli.main import main
from dsrouter.plugin import Plugins

TOPIC = "arn:aws:sns:us-east-1:123456789012:ds-events"
TAIL = 'output o { type = "stdout" }\nroute all { to o }\n'


def _check(tmp_path, capsys, options: str) -> tuple[int, str]:
    conf = tmp_path / "d.conf"
    conf.write_text(f'input s {{ type = "sns", listen = "127.0.0.1:0", {options} }}\n{TAIL}')
    code = main(["check", "-c", str(conf)])
    return code, capsys.readouterr().err


def test_the_sns_type_is_registered_with_the_dsl_option_names():
    options = {o.name for o in Plugins(entry_points=False).inputs["sns"].options}
    fixed = {"listen", "path", "cert", "key", "topics", "auto_confirm", "cert_hosts", "cert_ca"}
    assert fixed <= options and "allow_plain_http" in options


def test_a_valid_configuration_checks(tmp_path, capsys):
    code, err = _check(
        tmp_path,
        capsys,
        f'cert = "c.pem", key = "k.pem", topics = ["{TOPIC}"], auto_confirm = true, '
        'cert_hosts = ["127.0.0.1:8444"], max_age = 3h, min_signature_version = 2',
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("topics = []", "list at least one topic ARN"),
        ('topics = ["arn:aws:sqs:us-east-1:123456789012:q"]', "not an SNS topic ARN"),
        (f'topics = ["{TOPIC}"], cert_hosts = ["*.amazonaws.com"]', 'exact "host"'),
        (f'topics = ["{TOPIC}"], cert_hosts = ["https://x/"]', 'exact "host"'),
        (f'topics = ["{TOPIC}"], path = "sns"', 'a path such as "/sns"'),
        (f'topics = ["{TOPIC}"], min_signature_version = 3', "expected 1"),
        (f'topics = ["{TOPIC}"], max_bodi = 1MiB', "did you mean 'max_body'"),
        ('cert = "c.pem"', "missing required option 'topics'"),
    ],
    ids=["no-topics", "not-sns", "wildcard-host", "url-host", "path", "version", "typo", "topics"],
)
def test_bad_options_are_explained_by_check(tmp_path, capsys, options, message):
    code, err = _check(tmp_path, capsys, options)
    assert code == 1 and message in err, err


@pytest.mark.parametrize(
    ("options", "message", "code"),
    [
        (f'topics = ["{TOPIC}"]', "set cert and key", 1),  # a config error (E225)
        (f'topics = ["{TOPIC}"], cert = "c.pem"', "set both cert and key", 1),
        (f'topics = ["{TOPIC}"], cert = "missing.pem", key = "k.pem"', "no such file", 3),
        (f'topics = ["{TOPIC}"], allow_plain_http = true, cert_ca = "nope.pem"', "cert_ca", 3),
    ],
    ids=["no-cert", "no-key", "missing-file", "bad-ca"],
)
def test_run_refuses_what_cannot_work_in_plain_words(tmp_path, options, message, code):
    conf = tmp_path / "d.conf"
    conf.write_text(
        'settings { data_dir = "./data" }\n'
        f'input s {{ type = "sns", listen = "127.0.0.1:0", {options} }}\n{TAIL}'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dsrouter", "run", "-c", str(conf)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == code and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_daemon_without_an_sns_input_does_not_load_http_or_crypto_modules():
    code = (
        "import sys; from dsrouter.plugin import Plugins; Plugins(entry_points=False); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'h11')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


def test_check_reports_missing_cert_and_key_before_start(tmp_path, capsys):
    from dsrouter.cli.main import main

    conf = tmp_path / "s.conf"
    conf.write_text(
        'input s { type = "sns", listen = "127.0.0.1:8443", '
        'topics = ["arn:aws:sns:us-east-1:123456789012:ds"] }\n'
        'output o { type = "stdout" }\nroute all { to o }\n'
    )
    assert main(["check", "-c", str(conf)]) == 1
    assert "error[E225]" in capsys.readouterr().err
    conf.write_text(conf.read_text().replace("] }", "], allow_plain_http = true }", 1))
    assert main(["check", "-c", str(conf)]) == 0
