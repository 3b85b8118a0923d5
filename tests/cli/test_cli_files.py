"""Files a configuration reads (include, file(), -c) and files the CLI reads (dry-run, send).

Devices, FIFOs, /proc files and huge files are refused with a coded error or one line, never a
hang or a traceback; a file that is not configuration is never quoted in a diagnostic. Cases
that could block (a FIFO, /dev/zero) run the real command in a subprocess with a timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dsrouter.cli.main import main

from .conftest import IPS

TAIL = 'output o { type = "stdout" }\nroute _unmatched { to o }\n'
HOOK = 'output p {{ type = "webhook", url = env("DSR_URL", "http://127.0.0.1:9/"), {} }}\n'
linux = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def dsrouter(*argv: str, cwd: Path, env: dict | None = None, stdin: bytes | None = None):
    """The real command in a subprocess (for inputs that could block), at most 60 s."""
    proc = subprocess.run(
        [sys.executable, "-m", "dsrouter", *argv],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    err = proc.stderr.decode()
    assert "Traceback" not in err
    return proc.returncode, proc.stdout.decode(), err


# ---- include ----------------------------------------------------------------------------------


def test_an_included_file_that_is_not_configuration_is_never_quoted(conf, tmp_path, capsys):
    (tmp_path / "shadow").write_text("adm1nx:$6$S3CRETHASH$abc:19000:0:99999:7:::\nbin:*:1\n")
    code, _, err = run(capsys, "check", "-c", conf('include "shadow"\n' + TAIL))
    assert code == 1
    assert "shadow:1:1: error[E101]" in err and "found a name" in err
    assert "S3CRETHASH" not in err and "adm1nx" not in err
    assert len(err.strip().splitlines()) == 2  # the diagnostic and the summary: no excerpt


@linux
def test_include_proc_self_environ_shows_no_environment(conf, tmp_path):
    path = conf('include "/proc/self/environ"\n' + TAIL)
    code, _, err = dsrouter("check", "-c", path, cwd=tmp_path, env={"DSR_MARK": "m4rker-v4lue"})
    assert code == 1 and "/proc/self/environ:1:" in err
    assert "m4rker-v4lue" not in err and "DSR_MARK" not in err


@pytest.mark.parametrize(
    ("name", "text", "shown"),
    [
        ("extra.rules", "route a { to }\n", True),
        ("notes.txt", TAIL + "route b { to }\n", True),  # a block parsed before the error
        ("notes.txt", "route b { to }\n", False),
    ],
)
def test_excerpts_of_files_that_look_like_configuration(name, text, shown, conf, tmp_path, capsys):
    (tmp_path / name).write_text(text)
    code, _, err = run(capsys, "check", "-c", conf(f'include "{name}"\n'))
    assert code == 1 and "error[E101]" in err
    assert ("route" in err and "^" in err) is shown


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_include_and_file_refuse_a_fifo_without_blocking(conf, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for text in ('include "pipe"\n' + TAIL, HOOK.format('bearer_token = file("pipe")') + TAIL):
        code, _, err = dsrouter("check", "-c", conf(text), cwd=tmp_path)
        assert code == 1 and "error[E215]" in err and "not a regular file (a FIFO)" in err


@pytest.mark.parametrize(
    "text",
    ['include "/dev/zero"\n' + TAIL, HOOK.format('bearer_token = file("/dev/zero")') + TAIL],
    ids=["include", "file"],
)
def test_dev_zero_is_refused_not_read(text, conf, tmp_path):
    code, _, err = dsrouter("check", "-c", conf(text), cwd=tmp_path)
    assert code == 1 and "error[E215]" in err and "a character device" in err


def test_size_limits_of_include_and_file(conf, tmp_path, capsys):
    (tmp_path / "big.rules").write_text("#" * (1 << 20) + "\n")
    code, _, err = run(capsys, "check", "-c", conf('include "big.rules"\n' + TAIL))
    assert code == 1 and "error[E215]" in err and "larger than 1 MiB" in err
    (tmp_path / "token").write_text("t" * (64 << 10))
    (tmp_path / "token2").write_text("t" * ((64 << 10) + 1))
    code, _, _ = run(
        capsys, "check", "-c", conf(HOOK.format('bearer_token = file("token")') + TAIL)
    )
    assert code == 0
    text = HOOK.format('bearer_token = file("token2")') + TAIL
    code, _, err = run(capsys, "check", "-c", conf(text))
    assert code == 1 and "error[E215]" in err and "larger than 64 KiB" in err


def test_include_counts_and_chains_are_bounded(conf, tmp_path, capsys):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(1001):
        (many / f"{i:04d}.rules").write_text("")
    code, _, err = run(capsys, "check", "-c", conf('include "many/*.rules"\n' + TAIL))
    assert code == 1 and "error[E215]" in err and "more than 1000 files" in err
    for i in range(40):
        (tmp_path / f"c{i}.rules").write_text(f'include "c{i + 1}.rules"\n')
    (tmp_path / "c40.rules").write_text("")
    code, _, err = run(capsys, "check", "-c", conf('include "c0.rules"\n' + TAIL))
    assert code == 1 and "error[E214]" in err and "nested too deeply (limit 32 files)" in err


def test_main_config_may_be_a_pipe_but_not_a_device(tmp_path):
    code, out, _ = dsrouter("check", "-c", "/dev/stdin", cwd=tmp_path, stdin=TAIL.encode())
    assert code == 0 and "OK" in out
    code, _, err = dsrouter("check", "-c", "/dev/zero", cwd=tmp_path)
    assert code == 1 and "error[E220]" in err and "a character device" in err


# ---- the CLI's own input files ------------------------------------------------------------------


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dry-run", "/nonexistent"], "dsrouter dry-run: cannot read '/nonexistent': No such file"),
        (["dry-run", "{tmp}"], "it is a directory"),
        (["dry-run", "/dev/zero"], "not a regular file or a pipe"),
        (["send", "127.0.0.1:9", "/nonexistent"], "dsrouter send: cannot read '/nonexistent'"),
        (["send", "--udp", "--octet-count", "127.0.0.1:9", "--sample"], "cannot go with --udp"),
        (["send", "capture.log"], "dsrouter send: give HOST:PORT then FILE ('-' for stdin)"),
        (["send"], "dsrouter send: give HOST:PORT then FILE ('-' for stdin), or --sample"),
    ],
    ids=["missing", "directory", "device", "send-missing", "udp-octet-count", "file-only", "bare"],
)
def test_cli_input_errors_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    code, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 2 and out == ""
    assert message in _one_line(err)


def test_send_to_a_closed_port_is_one_line(capsys):
    with socket.socket() as holder:  # bound, never listening: connections are refused
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        code, _, err = run(capsys, "send", f"127.0.0.1:{port}", "--sample")
    assert code == 1
    assert _one_line(err) == (
        f"dsrouter send: cannot send to 127.0.0.1:{port} over tcp: Connection refused"
    )


def test_dry_run_into_a_closed_pipe_stops_quietly(tmp_path):
    capture = tmp_path / "cap.log"
    capture.write_text((IPS + "\n") * 20_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsrouter", "dry-run", str(capture)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"line 1:")
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and b"Traceback" not in err and b"BrokenPipe" not in err
