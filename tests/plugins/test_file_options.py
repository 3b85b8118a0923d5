"""``dsrouter check`` on the file output's options: the DSL.md example passes, bad values are
refused with the option's name, position and what it expects; ``sync`` does what it says."""

from __future__ import annotations

import os
import re

import pytest

from dsrouter.api import OutputContext
from dsrouter.cli import main
from dsrouter.plugins.file import FileOutput

HEAD = 'settings { data_dir = "./d" }\n'
ROUTE = "\nroute everything { to archive }\n"
DSL_EXAMPLE = (
    'output archive { type = "file", path = "archive/{module}/{host}/{date}.jsonl",'
    ' rotate = "daily", retain = 400d, compress = true }'
)


def _check(tmp_path, capsys, output: str) -> tuple[int, str]:
    conf = tmp_path / "dsrouter.conf"
    conf.write_text(HEAD + output + ROUTE)
    code = main(["check", "-c", str(conf)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        ', rotate = "daily", retain = 400d, compress = true',
        ', rotate = "hourly", keep = 48, compress = true',
        ", rotate = 100MiB, keep = 10",
        ', rotate = 1GiB, retain = 30d, sync = "batch", mode = "0600"',
        ', sync = "never", format = "raw", max_open_files = 8',
        "",
    ],
    ids=["dsl-example", "hourly", "size", "size-sync", "never", "path-only"],
)
def test_check_accepts_the_dsl_example_and_its_variants(tmp_path, capsys, options):
    output = DSL_EXAMPLE.replace(', rotate = "daily", retain = 400d, compress = true', options)
    assert (output == DSL_EXAMPLE) == (options.startswith(', rotate = "daily", retain = 400d'))
    code, err = _check(tmp_path, capsys, output)
    assert code == 0, err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ('rotate = "weekly"', 'expected "daily", "hourly" or a size such as 100MiB'),
        ("rotate = 0B", "a rotation size must be above 0"),
        ("rotate = true", 'expected "daily", "hourly" or a size such as 100MiB'),
        ("retain = 0s", "must be above 0"),
        ('retain = "400d"', "expected a duration"),
        ("keep = -1", "must be 0 (no limit) or more"),
        ('mode = "0999"', 'expected an octal permission such as "0640"'),
        ('mode = "rw-r-----"', 'expected an octal permission such as "0640"'),
        ('sync = "always"', 'expected one of "never", "batch"'),
        ("compress = 1", "expected true or false"),
        ("max_open_files = 0", "must be 1 or more"),
    ],
)
def test_check_rejects_bad_values_saying_what_it_expects(tmp_path, capsys, option, message):
    output = DSL_EXAMPLE.replace('rotate = "daily", retain = 400d, compress = true', option)
    code, err = _check(tmp_path, capsys, output)
    key = option.split(" ")[0]
    assert code == 1
    m = re.search(
        r":2:(\d+): error\[E206\]: invalid value for option '(\w+)' in output 'archive': (.*)", err
    )
    assert m, err
    assert m.group(2) == key and message in m.group(3)
    assert int(m.group(1)) == output.index(option) + len(key) + 4  # the caret is on the value
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("archive/{module}/../../x.jsonl", "'..' may not come after a placeholder"),
        ("archive/{host}.gz", "may not end in .gz or .tmp"),
        ("archive/{host", "braces must enclose a field name"),
    ],
)
def test_check_rejects_impossible_path_templates(tmp_path, capsys, path, message):
    code, err = _check(tmp_path, capsys, f'output archive {{ type = "file", path = "{path}" }}')
    assert code == 1 and "invalid value for option 'path'" in err and message in err


def test_plugins_lists_the_new_options(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    block = out.split("output file", 1)[1].split("\noutput ", 1)[0]
    for name in ("rotate", "retain", "keep", "compress", "mode", "sync"):
        assert re.search(rf"^\s+{name}\s", block, re.M), name
    assert re.search(r"^\s+rotate\s+\"daily\"\|\"hourly\"\|size\s", block, re.M)


@pytest.mark.parametrize(("sync", "expected"), [("batch", 2), ("never", 0)])
def test_sync_batch_syncs_each_file_a_batch_wrote_before_send_returns(
    tmp_path, monkeypatch, sync, expected
):
    synced = []
    real = getattr(os, "fdatasync", os.fsync)

    def spy(fd):
        synced.append(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fdatasync" if hasattr(os, "fdatasync") else "fsync", spy)
    ctx = OutputContext(tmp_path / "data", tmp_path)
    out = FileOutput("a", {"path": "archive/{host}.jsonl", "sync": sync}, ctx)
    out.open()
    out.send([{"host": "a"}, {"host": "b"}, {"host": "a"}])
    files = sorted((tmp_path / "data" / "archive").iterdir())
    out.close()
    file_syncs = [i for i in synced if i in {p.stat().st_ino for p in files}]
    assert len(file_syncs) == expected
    assert sorted(set(file_syncs)) == (sorted(p.stat().st_ino for p in files) if expected else [])
