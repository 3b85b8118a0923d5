"""``dsrouter plugin new``: the projects it writes install, pass their own tests and are listed.

One virtual environment (``--system-site-packages``: dsrouter, pytest and setuptools come from
the running interpreter) gets the three generated projects, one per kind, installed editable
with pip; each project's tests then run with that environment's python, and its ``dsrouter
plugins`` must list the new type or function.
"""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dsrouter.cli import main

KINDS = {  # kind → (NAME, the type or function it registers, the --json key listing it)
    "output": ("audit-trail", "audit_trail", "outputs"),
    "input": ("udp-relay", "udp_relay", "inputs"),
    "function": ("short-host", "short_host", "functions"),
}


def make_venv(path: Path) -> Path:
    """A venv that sees this interpreter's packages (also when it is itself a venv); its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)],
        check=True,
        timeout=120,
    )
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs)
    (Path(purelib) / "_parent_site.pth").write_text(lines)
    return python


def pip_install(python: Path, *args: str) -> None:
    """``pip install --no-deps --no-build-isolation`` into the venv of ``python`` (pip and
    setuptools >= 70.1, from the ``test`` extra, come from the parent: offline)."""
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """The three generated projects, installed editable into one venv: (venv python, paths)."""
    root = tmp_path_factory.mktemp("scaffold")
    paths = {}
    for kind, (name, _, _) in KINDS.items():
        assert main(["plugin", "new", name, f"--{kind}", "--dir", str(root / "src")]) == 0
        paths[kind] = root / "src" / name
    python = make_venv(root / "venv")
    pip_install(python, *(arg for p in paths.values() for arg in ("-e", str(p))))
    return python, paths


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_the_project_has_the_promised_files_and_metadata(projects):
    _, paths = projects
    project = paths["output"]
    written = [p.relative_to(project) for p in project.rglob("*") if p.is_file()]
    files = sorted(
        str(p) for p in written if ".egg-info" not in str(p) and "__pycache__" not in str(p)
    )
    assert files == [
        ".gitignore",
        "README.md",
        "dsrouter_audit_trail/__init__.py",
        "pyproject.toml",
        "tests/conftest.py",
        "tests/test_audit_trail.py",
    ]
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["build-system"]["build-backend"] == "setuptools.build_meta"
    assert meta["project"]["name"] == "dsrouter-audit-trail"
    assert meta["project"]["dependencies"] == ["dsrouter"]
    assert meta["project"]["entry-points"]["dsrouter"] == {"audit-trail": "dsrouter_audit_trail"}
    readme = (project / "README.md").read_text()
    assert "pip install -e ." in readme and "python -m pytest" in readme
    assert 'type = "audit_trail"' in readme
    conftest = (project / "tests" / "conftest.py").read_text()
    assert 'pytest_plugins = ["dsrouter.testing"]' in conftest


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_generated_tests_pass_in_the_installed_project(projects, kind, tmp_path):
    python, paths = projects
    tests = str(paths[kind] / "tests")
    done = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b\d+ passed\b", done.stdout), done.stdout
    assert not re.search(r"\b\d+ (failed|errors?)\b", done.stdout), done.stdout
    assert "Contract" in (paths[kind] / "tests" / f"test_{KINDS[kind][1]}.py").read_text()


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_venv_lists_the_new_plugin(projects, kind, tmp_path):
    python, _ = projects
    name, ident, table = KINDS[kind]
    done = _run(python, "-m", "dsrouter", "plugins", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [info] = [p for p in json.loads(done.stdout)["plugins"] if p["name"] == name]
    assert info["distribution"] == f"dsrouter-{name}" and info["version"] == "0.1.0"
    assert info[table] == [ident] and info["error"] is None
    text = _run(python, "-m", "dsrouter", "plugins", cwd=tmp_path).stdout
    assert f"plugin {name}  dsrouter-{name} 0.1.0  entry point" in text


def test_the_default_kind_is_an_output_in_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["plugin", "new", "sink"]) == 0
    assert "OutputType" in (tmp_path / "sink" / "dsrouter_sink" / "__init__.py").read_text()
    assert "wrote the output plugin dsrouter-sink" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("Bad", "output", "invalid plugin name 'Bad'"),
        ("1st", "output", "invalid plugin name '1st'"),
        ("a--b", "output", "invalid plugin name 'a--b'"),
        ("trailing-", "output", "invalid plugin name 'trailing-'"),
        ("has space", "output", "invalid plugin name 'has space'"),
        ("x" * 41, "output", "at most 40 characters"),
        ("dsrouter-geo", "output", "give the name without 'dsrouter-' ('geo')"),
        ("webhook", "output", "a built-in plugin is called 'webhook'"),
        ("tcp", "input", "a built-in input is called 'tcp'"),
        ("lower", "function", "'lower' is a built-in function of the rule language"),
        ("matches", "function", "'matches' is a word of the rule language"),
        ("stdout", "output", "'stdout' is taken"),
    ],
)
def test_a_bad_name_is_one_line_and_exit_2(tmp_path, capsys, name, kind, message):
    assert main(["plugin", "new", name, f"--{kind}", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsrouter plugin new: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "geo").mkdir()
    (tmp_path / "geo" / "mine.txt").write_text("keep")
    assert main(["plugin", "new", "geo", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"dsrouter plugin new: {tmp_path / 'geo'} already exists (a directory); nothing written\n"
    )
    assert [p.name for p in (tmp_path / "geo").iterdir()] == ["mine.txt"]


def test_a_file_where_the_project_or_its_parent_would_go_is_refused(tmp_path, capsys):
    (tmp_path / "geo").write_text("")
    assert main(["plugin", "new", "geo", "--dir", str(tmp_path)]) == 1
    assert "already exists (a file)" in capsys.readouterr().err
    assert main(["plugin", "new", "other", "--dir", str(tmp_path / "geo")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dsrouter plugin new: cannot create") and err.count("\n") == 1


def test_two_kinds_at_once_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["plugin", "new", "geo", "--input", "--function", "--dir", str(tmp_path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --function: not allowed with argument --input" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_plugin_without_an_action_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["plugin"])
    assert info.value.code == 2
    assert "the following arguments are required: ACTION" in capsys.readouterr().err
