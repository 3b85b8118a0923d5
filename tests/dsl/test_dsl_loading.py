"""Loading from files: includes, env()/file() values, settings, defaults and test blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsrouter.dsl import compile_routes, load_config, load_config_text
from dsrouter.errors import ConfigError
from dsrouter.options import Duration, Size

from .conftest import OUTPUTS, SPECS


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def codes(exc: pytest.ExceptionInfo) -> list[str]:
    return [d.code for d in exc.value.diagnostics]


def test_include_glob_spliced_in_place_and_sorted(tmp_path):
    write(
        tmp_path,
        {
            "conf/main.conf": OUTPUTS
            + 'route first { when dpt == 1; to pager }\ninclude "../rules/*.rules"\n'
            + "route last { to archive }\n",
            "rules/b.rules": "route b { when dpt == 3; to siem }\n",
            "rules/a.rules": 'include "sub/extra.rules"\nroute a { when dpt == 2; to siem }\n',
            "rules/sub/extra.rules": "route extra { when dpt == 4; to siem }\n",
        },
    )
    config = load_config(tmp_path / "conf/main.conf", SPECS)
    assert [r.name for r in config.routes] == ["first", "extra", "a", "b", "last"]
    assert [p.name for p in config.files] == ["main.conf", "a.rules", "extra.rules", "b.rules"]
    assert compile_routes(config).decide({"dpt": 4}).routes == ("extra",)


def test_include_cycle_reports_both_locations(tmp_path):
    write(
        tmp_path,
        {
            "main.conf": OUTPUTS + 'include "a.rules"\nroute all { to archive }\n',
            "a.rules": 'include "b.rules"\n',
            "b.rules": '# loops back\ninclude "a.rules"\n',
        },
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "main.conf", SPECS)
    (d,) = info.value.diagnostics
    assert d.code == "E214"
    assert d.span.path.endswith("b.rules") and (d.span.line, d.span.column) == (2, 1)
    assert "a.rules" in d.message
    assert d.help.endswith("a.rules:1:1")


def test_include_of_main_file_is_a_cycle(tmp_path):
    write(tmp_path, {"main.conf": OUTPUTS + 'include "*.conf"\nroute all { to archive }\n'})
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "main.conf", SPECS)
    assert codes(info) == ["E214"]
    assert "cannot include itself" in info.value.diagnostics[0].help


def test_errors_in_included_files_point_at_them(tmp_path):
    write(
        tmp_path,
        {
            "main.conf": OUTPUTS + 'include "r/*.rules"\nroute all { to archive }\n',
            "r/x.rules": "\n\nroute x { when dpt == 1; to archiv }\n",
        },
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "main.conf", SPECS)
    (d,) = info.value.diagnostics
    assert (d.code, Path(d.span.path).name, d.span.line, d.span.column) == (
        "E201",
        "x.rules",
        3,
        29,
    )
    assert d.source_line == "route x { when dpt == 1; to archiv }"


def test_env_values(monkeypatch):
    monkeypatch.setenv("ARCHIVE_PATH", "/var/x.jsonl")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    text = (
        'output a { type = "file", path = env("ARCHIVE_PATH") }\n'
        'output b { type = "file", path = env("NOT_SET_ANYWHERE", "dflt") }\n'
        "route all { to a, b }\n"
    )
    config = load_config_text(text, "t.conf", SPECS)
    assert [o.options["path"] for o in config.outputs] == ["/var/x.jsonl", "dflt"]


def test_environ_mapping_overrides_process_env():
    text = 'output a { type = "file", path = env("P") }\nroute all { to a }\n'
    config = load_config_text(text, "t.conf", SPECS, environ={"P": "from-map"})
    assert config.outputs[0].options["path"] == "from-map"


def test_file_values_relative_to_the_file_that_says_them(tmp_path):
    write(
        tmp_path,
        {
            "main.conf": 'include "sub/out.rules"\nroute all { to a }\n',
            "sub/out.rules": 'output a { type = "file", path = file("secret.txt") }\n',
            "sub/secret.txt": "  /data/a.jsonl \n",
        },
    )
    config = load_config(tmp_path / "main.conf", SPECS)
    assert config.outputs[0].options["path"] == "/data/a.jsonl"


def test_defaults_filled_and_values_coerced():
    text = (
        'output a { type = "file", path = "p", max_size = 64KiB, retain = 2h }\n'
        'input i { type = "tls", listen = "[::1]:6514", allow = [10.0.0.0/8, 192.0.2.10] }\n'
        "route all { to a }\n"
    )
    config = load_config_text(text, "t.conf", SPECS)
    out = config.outputs[0]
    assert (out.name, out.type) == ("a", "file")
    assert out.options == {
        "path": "p",
        "retain": Duration(7200),
        "compress": False,
        "max_size": Size(65536),
    }
    assert config.inputs[0].options["listen"] == ("::1", 6514)
    assert [str(n) for n in config.inputs[0].options["allow"]] == ["10.0.0.0/8", "192.0.2.10/32"]


def test_settings_resolved_against_main_file(tmp_path):
    settings = 'settings { data_dir = "../data", metrics = "127.0.0.1:9514" }\n'
    write(tmp_path, {"etc/main.conf": settings + OUTPUTS + "route all { to archive }\n"})
    config = load_config(tmp_path / "etc/main.conf", SPECS)
    assert config.settings["data_dir"] == tmp_path / "data"
    assert config.settings["metrics"] == ("127.0.0.1", 9514)
    assert config.base_dir == tmp_path / "etc"


def test_settings_defaults(tmp_path):
    config = load_config_text(
        OUTPUTS + "route all { to archive }", base_dir=tmp_path, option_specs=SPECS
    )
    assert config.settings == {
        "data_dir": tmp_path / "dsrouter-data",
        "metrics": None,
        "shutdown_timeout": 10.0,
        "workers": None,
        "disable_plugins": (),
    }


def test_test_blocks_are_kept_for_the_runner():
    text = OUTPUTS + (
        "route all { to archive }\n"
        'test "archive everything" {\n'
        '  input "<134>Nov 27 23:18:32 web-01 CEF:0|Trend Micro|x"\n'
        '  expect routes == ["all"]; expect outputs == ["archive"]\n'
        '  expect host == "web-01"; expect ext["odd key"] == 3; expect dropped\n}\n'
    )
    (case,) = load_config_text(text, "t.conf", SPECS).tests
    assert case.description == "archive everything"
    kinds = [type(i).__name__ for i in case.items]
    assert kinds[:3] == ["TestInput", "ExpectRoutes", "ExpectOutputs"]
    assert case.items[0].text.startswith("<134>Nov 27")
    fields = [(i.field.dotted, i.value.value) for i in case.items if hasattr(i, "field")]
    assert fields == [("host", "web-01"), ('ext["odd key"]', 3)]


@pytest.mark.parametrize("value", ["-1", "65", '"auto"'])
def test_workers_is_a_count_of_parser_processes(tmp_path, value):
    text = f"settings {{ workers = {value} }}\n" + OUTPUTS + "route all { to archive }"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=tmp_path, option_specs=SPECS)
    assert codes(info) == ["E206"]
    ok = "settings { workers = 0 }\n" + OUTPUTS + "route all { to archive }"
    assert load_config_text(ok, base_dir=tmp_path, option_specs=SPECS).settings["workers"] == 0
