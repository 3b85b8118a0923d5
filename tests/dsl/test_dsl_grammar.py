"""The grammar builds without conflicts and parses the language's documented forms."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from dsrouter.dsl import ast, load_config_text
from dsrouter.dsl.diagnostics import Reporter
from dsrouter.dsl.parser import build_parser, grammar_text, parse
from dsrouter.dsl.syntax import RESERVED
from dsrouter.options import Duration, Size

from .conftest import SPECS


def test_grammar_builds_in_strict_mode():
    parser = build_parser(strict=True)
    assert parser.options.parser == "lalr"


def _value(text: str):
    rep = Reporter()
    tree = parse(f"output o {{ v = {text} }}", "t.conf", rep)
    assert rep.diagnostics == []
    return tree.items[0].options[0].value


@pytest.mark.parametrize(
    "text, expected",
    [
        ('"plain"', "plain"),
        (r'"q\"b\\n\nt\t"', 'q"b\\n\nt\t'),
        ("42", 42),
        ("-7", -7),
        ("1.5", 1.5),
        ("true", True),
        ("false", False),
        ("500ms", Duration(0.5)),
        ("30s", Duration(30)),
        ("5m", Duration(300)),
        ("2h", Duration(7200)),
        ("400d", Duration(400 * 86400)),
        ("512B", Size(512)),
        ("64KiB", Size(65536)),
        ("10MiB", Size(10 * 1024**2)),
        ("1GiB", Size(1024**3)),
        ("192.0.2.10", ipaddress.ip_address("192.0.2.10")),
        ("10.0.0.0/8", ipaddress.ip_network("10.0.0.0/8")),
        ("2001:db8::/32", ipaddress.ip_network("2001:db8::/32")),
        ("::1", ipaddress.ip_address("::1")),
        ("fe80::1:2", ipaddress.ip_address("fe80::1:2")),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_literal_values(text, expected):
    node = _value(text)
    assert isinstance(node, ast.Literal)
    assert node.value == expected
    assert type(node.value) is type(expected)


def test_list_and_calls_parse():
    node = _value('[1, "a", 10.0.0.0/8, env("X", "d"),]')
    assert isinstance(node, ast.ListValue)
    assert [type(i).__name__ for i in node.items] == ["Literal", "Literal", "Literal", "Call"]


def test_precedence_not_and_or():
    rep = Reporter()
    tree = parse("route r { when not a == 1 and b == 2 or c == 3; to o }", "t.conf", rep)
    when = tree.items[0].actions[0].expr
    assert isinstance(when, ast.BoolOp) and when.op == "or"
    assert isinstance(when.left, ast.BoolOp) and when.left.op == "and"
    assert isinstance(when.left.left, ast.Not)


def test_file_level_words_double_as_names():
    OUT = 'output input { type = "stdout" }\n'
    text = (
        OUT
        + 'route test { when input == "udp" and dpt == 1; to input }\nroute _unmatched { drop }\n'
    )
    config = load_config_text(text, option_specs=SPECS)
    assert config.routes[0].name == "test"
    assert config.routes[0].outputs == ("input",)


def test_reserved_words_are_the_ones_the_grammar_excludes():
    m = re.search(r"^NAME: /\(\?!\(\?:([a-z|]+)\)", grammar_text(), re.M)
    assert m is not None and set(m.group(1).split("|")) == RESERVED


@pytest.mark.parametrize("word", sorted(RESERVED))
def test_expression_and_action_words_are_reserved(word):
    rep = Reporter()
    assert parse(f"route {word} {{ drop }}", "t.conf", rep) is None
    (d,) = rep.errors
    assert (d.code, d.span.column) == ("E101", 7), d.render()
    assert f"found '{word}'" in d.message


def test_future_forms_parse_to_ast():
    text = (
        'route r { when x matches /a\\/b/i and y contains "s" and lower(z) == "q"\n'
        '  throttle 1 per 5m by host, signature_id\n  set tag = "x"\n  to o }'
    )
    rep = Reporter()
    tree = parse(text, "t.conf", rep)
    actions = tree.items[0].actions
    assert [type(a).__name__ for a in actions] == ["When", "Throttle", "SetField", "To"]
    assert actions[1].window == 300 and actions[1].count == 1
    matches = actions[0].expr.left.left
    assert (matches.pattern, matches.flags) == ("a\\/b", "i")


def test_test_blocks_parse():
    text = (
        'test "xss" {\n  input "<134>msg"\n  expect routes == ["a", "b"]\n'
        '  expect outputs == []; expect dropped\n  expect syslog.hostname == "web-01"\n}'
    )
    rep = Reporter()
    items = parse(text, "t.conf", rep).items[0].items
    names = [type(i).__name__ for i in items]
    assert names == ["TestInput", "ExpectRoutes", "ExpectOutputs", "ExpectDropped", "ExpectField"]
    assert items[4].field.path == ("syslog", "hostname")


def test_dsl_contract_example_parses():
    doc = Path(__file__).resolve().parents[3] / "shared" / "DSL.md"
    if not doc.exists():
        pytest.skip("shared/DSL.md not available")
    text = doc.read_text().split("```")[1]
    rep = Reporter()
    tree = parse(text, "DSL.md", rep)
    assert rep.diagnostics == []
    kinds = [type(i).__name__ for i in tree.items]
    assert kinds.count("RouteDecl") == 3 and kinds.count("TestDecl") == 1


def test_grammar_ships_as_package_data():
    from importlib import resources

    assert resources.files("dsrouter.dsl").joinpath("grammar.lark").is_file()
