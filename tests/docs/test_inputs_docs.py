"""docs/inputs.md lists every option of the built-in inputs with its real default, its
example passes `check`, and the counters it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from dsrouter.cli.main import main
from dsrouter.options import Duration, Size
from dsrouter.plugin import Plugins

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docs" / "inputs.md").read_text()


def _written(value) -> str:
    if isinstance(value, Size):
        for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value and value % size == 0:
                return f"{value // size}{unit}"
    if isinstance(value, Duration):
        return f"{value:g}s"
    if value == []:
        return "[]"
    return str(value)


def rows() -> dict[str, tuple[set[str], str]]:
    out = {}
    for line in TEXT.split("## Options", 1)[1].split("\n## ", 1)[0].splitlines():
        m = re.match(r"\| ((?:`\w+`(?:, )?)+) \| ([\w, ]+) \| ([^|]+) \|", line)
        if m:
            for name in re.findall(r"`(\w+)`", m.group(1)):
                out[name] = ({t.strip() for t in m.group(2).split(",")}, m.group(3).strip())
    return out


def test_every_input_option_is_documented_with_its_inputs_and_default():
    documented = rows()
    types = Plugins(entry_points=False).inputs
    for kind in ("udp", "tcp", "tls"):
        for option in types[kind].options:
            assert option.name in documented, option.name
            where, default = documented[option.name]
            assert kind in where or "all" in where, (kind, option.name)
            if option.required:
                assert default == "(required)", option.name
            elif option.default is None:
                assert default.startswith("none"), option.name
            else:
                assert default.split(" ")[0].strip("`") == _written(option.default), option.name


def test_example_config_checks(tmp_path, capsys):
    example = re.search(r"```\n(input .*?)```", TEXT, re.S).group(1)
    conf = tmp_path / "d.conf"
    conf.write_text(example + 'output o { type = "stdout" }\nroute all { to o }\n')
    assert main(["check", "-c", str(conf)]) == 0, capsys.readouterr().err


def test_counters_and_reasons_named_exist():
    from dsrouter import metrics

    source = Path(metrics.__file__).read_text()
    for name in set(re.findall(r"`(dsrouter_\w+?)(?:_total)?\{", TEXT)):
        assert f'"{name}"' in source, name
    counters = TEXT.split("## Counters", 1)[1]
    refused, dropped = counters.split("`dsrouter_input_dropped_total", 1)
    assert set(re.findall(r"`([a-z_]+)`", refused)) == {r for r, _ in metrics._INPUT_REFUSALS}
    reasons = set(re.findall(r"`([a-z_]+)`", dropped.split("\n")[0]))
    assert reasons == {r for r, _ in metrics._INPUT_DROPS}
