"""docs/sns.md lists every option with its real default and every outcome with its status;
its example configuration passes `check`."""

from __future__ import annotations

import re
from pathlib import Path

from dsrouter.cli.main import main
from dsrouter.ingest.sns_message import STATUS
from dsrouter.options import Duration, Size
from dsrouter.plugin import Plugins

TEXT = (Path(__file__).resolve().parents[2] / "docs" / "sns.md").read_text()


def _written(value) -> str:
    if isinstance(value, Size) and value % (1 << 20) == 0:
        return f"{value >> 20}MiB"
    if isinstance(value, Duration):
        return f"{value:g}s"
    if value == []:
        return "[]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_option_is_documented_with_its_default():
    table = TEXT.split("## Options", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        m = re.match(r"\| ((?:`\w+`(?:, )?)+) \| ([^|]+) \|", line)
        if m:
            for name in re.findall(r"`(\w+)`", m.group(1)):
                rows[name] = m.group(2).strip()
    for option in Plugins(entry_points=False).inputs["sns"].options:
        assert option.name in rows, option.name
        default = rows[option.name]
        if option.required:
            assert default == "(required)", option.name
        elif option.default is None:
            assert default == "none", option.name
        else:
            assert default.strip("`") == _written(option.default), option.name


def test_every_outcome_is_documented_with_its_status():
    table = TEXT.split("| answer | outcome", 1)[1].split("\n\n", 1)[0]
    documented: dict[str, str] = {}
    for line in table.splitlines()[2:]:
        statuses, outcomes = line.split("|")[1:3]
        names = re.findall(r"`(\w+)`", outcomes)
        codes = [s.strip() for s in statuses.split(",")]
        for i, name in enumerate(names):
            documented[name] = codes[min(i, len(codes) - 1)]
    assert documented == {k: str(v) for k, v in STATUS.items()}


def test_the_example_configuration_checks(tmp_path, capsys):
    example = re.search(r"```\n(input .*?)```", TEXT, re.S).group(1)
    conf = tmp_path / "d.conf"
    conf.write_text(example + 'output o { type = "stdout" }\nroute all { to o }\n')
    assert main(["check", "-c", str(conf)]) == 0, capsys.readouterr().err


def test_the_metric_named_exists():
    from dsrouter import metrics

    source = Path(metrics.__file__).read_text()
    for name in set(re.findall(r"`(dsrouter_\w+?)(?:_total)?\{", TEXT)):
        assert f'"{name}"' in source, name
