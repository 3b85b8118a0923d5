"""``settings { cluster_* }`` through ``dsrouter check``, and what ``cluster_options`` makes of them.

E226: a server that is not ``nats://HOST:PORT`` / ``tls://HOST:PORT``, or no server; E227:
whatever ``ClusterOptions.problems()`` finds, at the setting concerned; W403: a cluster setting
without ``cluster_servers``. Secrets (``cluster_password``, ``cluster_token``) and values from
``env()``/``file()`` never appear in the output; file names are relative to the configuration.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import orjson
import pytest

from dsrouter.cli.common import load
from dsrouter.cli.main import main
from dsrouter.delivery.cluster_settings import cluster_options
from dsrouter.delivery.jetstream_options import ClusterOptions

TAIL = 'output o { type = "stdout" }\nroute all { to o }\n'
DIAG = re.compile(r"^(\S+?):(\d+):(\d+): (?:error|warning)\[([EW]\d{3})\]: (.*)$", re.M)
SECRET = "S3cr3t-pw-7f1"
TOKEN = "T0ken-9c2e"


def write(tmp_path: Path, settings: str, name: str = "dsrouter.conf") -> Path:
    """A configuration with these settings lines (owner-only: no W201) and one output."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("settings {\n" + settings + "\n}\n" + TAIL)
    os.chmod(path, 0o600)
    return path


def check(capsys, path: Path, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["check", *extra, "-c", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def diagnostics(err: str) -> list[tuple[str, int, int, str]]:
    """(code, line, column, message) of every diagnostic ``check`` printed."""
    return [(c, int(line), int(col), msg) for _, line, col, c, msg in DIAG.findall(err)]


def config_of(path: Path):
    config, _, _ = load(argparse.Namespace(config=str(path)))
    return config


SERVERS = '  cluster_servers = ["nats://n1:4222"]'


# ---- a valid cluster -------------------------------------------------------------------


def test_full_cluster_checks_clean_and_becomes_cluster_options(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NATS_PASSWORD", SECRET)
    monkeypatch.chdir(tmp_path.parent)  # file names are relative to the config, not the cwd
    path = write(
        tmp_path,
        "\n".join(
            [
                '  cluster_servers = ["tls://n1:4222", "tls://n2:4222", "nats://[::1]:4222"]',
                '  cluster_stream = "events-prod"',
                "  cluster_replicas = 5",
                '  cluster_tls_ca = "certs/ca.pem"',
                '  cluster_tls_cert = "certs/router.pem"',
                '  cluster_tls_key = "/etc/dsrouter/router.key"',
                '  cluster_user = "router"',
                '  cluster_password = env("NATS_PASSWORD")',
                "  cluster_ack_wait = 1500ms",
            ]
        ),
        name="conf/dsrouter.conf",
    )
    code, out, err = check(capsys, path)
    assert (code, err) == (0, "")
    assert "0 warning(s)" in out
    opts = cluster_options(config_of(path).settings, config_of(path).base_dir)
    assert opts == ClusterOptions(
        servers=("tls://n1:4222", "tls://n2:4222", "nats://[::1]:4222"),
        stream="events-prod",
        replicas=5,
        tls_ca=str(tmp_path / "conf" / "certs" / "ca.pem"),
        tls_cert=str(tmp_path / "conf" / "certs" / "router.pem"),
        tls_key="/etc/dsrouter/router.key",
        user="router",
        password=SECRET,
        ack_wait=1.5,
    )
    assert isinstance(opts.ack_wait, float) and SECRET not in repr(opts)


def test_defaults_and_a_token_from_a_file(tmp_path, capsys):
    (tmp_path / "nats.token").write_text(TOKEN + "\n")
    path = write(tmp_path, SERVERS + '\n  cluster_token = file("nats.token")')
    code, out, err = check(capsys, path)
    assert (code, err) == (0, "") and TOKEN not in out
    config = config_of(path)
    opts = cluster_options(config.settings, config.base_dir)
    assert opts is not None
    assert (opts.servers, opts.stream, opts.replicas, opts.ack_wait) == (
        ("nats://n1:4222",),
        "dsrouter",
        3,
        30.0,
    )
    assert (opts.token, opts.user, opts.password, opts.creds) == (TOKEN, None, None, None)


def test_creds_file_is_relative_to_the_config(tmp_path, capsys):
    path = write(tmp_path, SERVERS + '\n  cluster_creds = "nats/router.creds"')
    assert check(capsys, path)[0] == 0
    config = config_of(path)
    opts = cluster_options(config.settings, config.base_dir)
    assert opts is not None and opts.creds == str(tmp_path / "nats" / "router.creds")


def test_no_cluster_servers_means_no_cluster(tmp_path, capsys):
    path = write(tmp_path, '  data_dir = "d"')
    assert check(capsys, path)[:3:2] == (0, "")
    config = config_of(path)
    assert not any(k.startswith("cluster_") for k in config.settings)  # nothing changes
    assert cluster_options(config.settings, config.base_dir) is None


def test_with_servers_every_cluster_setting_has_its_value(tmp_path, capsys):
    config = config_of(write(tmp_path, SERVERS))
    cluster = {k: v for k, v in config.settings.items() if k.startswith("cluster_")}
    assert cluster == {
        "cluster_servers": ["nats://n1:4222"],
        "cluster_stream": "dsrouter",
        "cluster_replicas": 3,
        "cluster_tls_ca": None,
        "cluster_tls_cert": None,
        "cluster_tls_key": None,
        "cluster_creds": None,
        "cluster_user": None,
        "cluster_password": None,
        "cluster_token": None,
        "cluster_ack_wait": 30.0,
    }
    assert cluster_options(config.settings, config.base_dir) == ClusterOptions(("nats://n1:4222",))


def test_cluster_setting_without_servers_is_kept_but_unused(tmp_path, capsys):
    config = config_of(write(tmp_path, "  cluster_replicas = 5"))
    assert config.settings["cluster_replicas"] == 5 and "cluster_stream" not in config.settings
    assert cluster_options(config.settings, config.base_dir) is None


# ---- E226: the servers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ("nats-1:4222", "must start with nats:// or tls://"),
        ("ws://nats-1:8080", "must start with nats:// or tls://"),
        ("http://nats-1:4222", "must start with nats:// or tls://"),
        ("nats://nats-1", "has no port (nats://HOST:PORT)"),
        ("nats://nats-1:99999", "has an invalid port (1 to 65535)"),
        ("nats://nats-1:0", "has no port (nats://HOST:PORT)"),
        ("nats://:4222", "has no host"),
        ("nats://nats-1:4222/path", "has more than HOST:PORT"),
    ],
)
def test_bad_server(server, problem, tmp_path, capsys):
    path = write(tmp_path, f'  cluster_servers = ["nats://ok:4222", "{server}"]')
    code, _, err = check(capsys, path)
    assert code == 1
    assert diagnostics(err) == [("E226", 2, 40, f'cluster server "{server}" {problem}')]
    assert f"{path}:2:40: error[E226]" in err
    assert 'help: write "nats://HOST:PORT" (or "tls://HOST:PORT" for TLS)' in err


def test_empty_server_list_and_not_a_string(tmp_path, capsys):
    code, _, err = check(capsys, write(tmp_path, "  cluster_servers = []"))
    assert (code, diagnostics(err)) == (1, [("E226", 2, 21, "cluster_servers lists no server")])
    code, _, err = check(capsys, write(tmp_path, "  cluster_servers = [4222]"))
    assert diagnostics(err) == [("E226", 2, 22, "cluster server number 1 is not a string")]


def test_server_not_a_list_is_e206_only(tmp_path, capsys):
    path = write(tmp_path, '  cluster_servers = "nats://n1:4222"\n  cluster_replicas = 3')
    code, _, err = check(capsys, path)
    assert code == 1
    assert [(c, line, col) for c, line, col, _ in diagnostics(err)] == [("E206", 2, 21)]


def test_user_information_in_a_server_is_refused_and_masked(tmp_path, capsys):
    path = write(tmp_path, f'  cluster_servers = ["nats://router:{SECRET}@n1:4222"]')
    code, out, err = check(capsys, path)
    assert code == 1
    assert diagnostics(err) == [
        (
            "E226",
            2,
            22,
            "cluster server number 1 holds user information: "
            "use cluster_user + cluster_password or cluster_token",
        )
    ]
    assert SECRET not in out + err and "@n1" not in err


def test_server_from_env_is_never_quoted(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NATS_URL", "http://hidden-host.internal:4222")
    path = write(tmp_path, '  cluster_servers = ["nats://n1:4222", env("NATS_URL")]')
    code, _, err = check(capsys, path)
    assert diagnostics(err) == [
        ("E226", 2, 40, "cluster server number 2 must start with nats:// or tls://")
    ]
    assert "hidden-host" not in err


# ---- E227: ClusterOptions.problems() at the setting concerned ----------------------------


@pytest.mark.parametrize(
    ("lines", "where", "message"),
    [
        (["  cluster_replicas = 7"], (3, 22), "cluster_replicas 7: JetStream allows 1 to 5"),
        (["  cluster_replicas = 0"], (3, 22), "cluster_replicas 0: JetStream allows 1 to 5"),
        (
            ['  cluster_stream = "dsrouter.events"'],
            (3, 20),
            "cluster_stream 'dsrouter.events': letters, digits, '_' and '-' only",
        ),
        (["  cluster_ack_wait = 1s"], (3, 22), "cluster ack_wait 1s: at least 1.5s"),
        (
            ['  cluster_tls_cert = "c.pem"'],
            (3, 3),
            "cluster TLS: a client certificate needs its key and the other way round",
        ),
        (
            ['  cluster_tls_key = "c.key"'],
            (3, 3),
            "cluster TLS: a client certificate needs its key and the other way round",
        ),
        (
            ['  cluster_user = "router"'],
            (3, 3),
            "cluster credentials: user and password go together",
        ),
        (
            ['  cluster_password = env("PW")'],
            (3, 3),
            "cluster credentials: user and password go together",
        ),
        (
            ['  cluster_token = env("PW")', '  cluster_creds = "r.creds"'],
            (4, 3),
            "cluster credentials: one of creds, user + password, token",
        ),
    ],
)
def test_cluster_problem(lines, where, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PW", SECRET)
    code, out, err = check(capsys, write(tmp_path, "\n".join([SERVERS, *lines])))
    assert code == 1
    assert diagnostics(err) == [("E227", *where, message)]
    assert SECRET not in out + err


def test_every_problem_is_reported_even_with_a_bad_server(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PW", SECRET)
    text = "\n".join(
        [
            '  cluster_servers = ["nats-1"]',
            "  cluster_replicas = 9",
            '  cluster_user = "u", cluster_password = env("PW")',
            '  cluster_token = env("PW")',
            "  cluster_ack_wait = 100ms",
        ]
    )
    code, _, err = check(capsys, write(tmp_path, text))
    assert code == 1
    assert [(c, line, col) for c, line, col, _ in diagnostics(err)] == [
        ("E226", 2, 22),
        ("E227", 3, 22),
        ("E227", 5, 3),  # the second way to authenticate
        ("E227", 6, 22),
    ]
    assert SECRET not in err


def test_stream_from_env_is_not_quoted(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STREAM", "hidden stream")
    code, _, err = check(capsys, write(tmp_path, SERVERS + '\n  cluster_stream = env("STREAM")'))
    assert diagnostics(err) == [
        ("E227", 3, 20, "cluster_stream: letters, digits, '_' and '-' only")
    ]
    assert "hidden" not in err


def test_an_invalid_setting_is_e206_without_knock_on_errors(tmp_path, capsys):
    text = SERVERS + '\n  cluster_tls_cert = "c.pem", cluster_tls_key = 5\n  cluster_replicas = "3"'
    code, _, err = check(capsys, write(tmp_path, text))
    assert [c for c, *_ in diagnostics(err)] == ["E206", "E206"]


# ---- W403: cluster settings without servers -------------------------------------------


def test_cluster_settings_without_servers_warn_once_each(tmp_path, capsys):
    text = '  cluster_replicas = 9\n  data_dir = "d"\n  cluster_token = env("NOPE", "")'
    code, out, err = check(capsys, write(tmp_path, text))
    assert code == 0 and "2 warning(s)" in out
    assert diagnostics(err) == [
        ("W403", 2, 3, "setting 'cluster_replicas' has no effect without cluster_servers"),
        ("W403", 4, 3, "setting 'cluster_token' has no effect without cluster_servers"),
    ]
    assert 'help: the cluster is off: add cluster_servers = ["nats://HOST:PORT", ...]' in err


# ---- secrets ---------------------------------------------------------------------------


def test_secrets_from_env_and_file_never_appear(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PW", SECRET)
    (tmp_path / "tok").write_text(TOKEN)
    text = "\n".join(
        [
            SERVERS,
            '  cluster_user = "u", cluster_password = env("PW"), cluster_token = file("tok")',
            "  cluster_replicas = 6",
        ]
    )
    path = write(tmp_path, text)
    for extra in ((), ("--json",)):
        code, out, err = check(capsys, path, *extra)
        assert code == 1
        assert SECRET not in out + err and TOKEN not in out + err
    doc = orjson.loads(out)
    assert [d["code"] for d in doc["diagnostics"]] == ["E227", "E227"]


def test_a_secret_of_the_wrong_kind_is_not_echoed(tmp_path, capsys):
    path = write(tmp_path, SERVERS + f'\n  cluster_token = ["{SECRET}"]')
    code, _, err = check(capsys, path)
    assert diagnostics(err) == [
        (
            "E206",
            3,
            19,
            "invalid value for option 'cluster_token' in settings: "
            "expected a value of kind 'string'",
        )
    ]
    assert SECRET not in err


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_literal_secret_is_masked_and_draws_w201(tmp_path, capsys):
    text = f'\n  cluster_user = "u", cluster_password = "{SECRET}"\n  cluster_replicas = 8'
    path = write(tmp_path, SERVERS + text)
    os.chmod(path, 0o644)
    code, out, err = check(capsys, path)
    assert [(c, line) for c, line, *_ in diagnostics(err)] == [("W201", 3), ("E227", 4)]
    assert "secret option 'cluster_password' of settings" in err
    assert SECRET not in out + err and '"' + "*" * len(SECRET) + '"' in err


def test_literal_secret_is_masked_in_a_syntax_error(tmp_path, capsys):
    path = write(tmp_path, f'  cluster_password = "{SECRET}" ]')
    code, _, err = check(capsys, path)
    assert code == 1 and "error[E101]" in err
    assert SECRET not in err


def test_dry_run_json_shows_no_secret(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PW", SECRET)
    path = write(tmp_path, SERVERS + '\n  cluster_user = "u", cluster_password = env("PW")')
    cap = tmp_path / "cap.log"
    cap.write_text("<134>Nov 27 23:18:32 web-01 CEF:0|Trend Micro|Deep Security Agent|20|21|x|5|\n")
    capsys.readouterr()
    assert main(["dry-run", "--json", "-c", str(path), str(cap)]) == 0
    out, err = capsys.readouterr()
    assert out and SECRET not in out + err
