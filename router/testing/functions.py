"""``FunctionContract``: a rule function against its declared types, through the real DSL."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any, ClassVar

import pytest

from dsrouter.api import Function
from dsrouter.dsl import compile_routes, load_config_text
from dsrouter.errors import ConfigError
from dsrouter.plugin import RESERVED_FUNCTIONS, Plugins

TYPES = ("string", "int", "float", "number", "bool", "ip", "any")
#: A catalogue field of each parameter type, for calls on a field the event lacks.
FIELD_OF = {
    "string": "host",
    "any": "host",
    "int": "severity",
    "float": "severity",
    "number": "severity",
    "ip": "src",
    "bool": "truncated",
}
#: A constant of each return type that the function's null result is compared with.
NEVER = {
    "string": '!= "kit-never"',
    "any": '!= "kit-never"',
    "int": "!= -987654321",
    "number": "!= -987654321",
    "float": "!= -9.5",
    "bool": "!= true",
    "ip": "not in [192.0.2.254]",
}
_IP = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)


def has_type(value: Any, declared: str) -> bool:
    """Whether ``value`` is of the declared DSL type (``None``, null, always is)."""
    if value is None or declared == "any":
        return True
    checks = {
        "string": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, float),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "ip": lambda v: isinstance(v, _IP | str),
    }
    return checks[declared](value)


class FunctionContract:
    """Subclass it as ``TestMyFunction``; set :attr:`name` and :attr:`examples`."""

    name: ClassVar[str] = ""
    #: ``[(args, expected result), ...]``; ``None`` as a result means null.
    examples: ClassVar[list[tuple[tuple, Any]]] = []
    extra_plugins: ClassVar[tuple] = ()

    @pytest.fixture
    def kit_plugins(self) -> Plugins:
        return Plugins(extra=self.extra_plugins)

    @pytest.fixture
    def function(self, kit_plugins: Plugins) -> Function:
        assert self.name in kit_plugins.functions, (
            f"no function {self.name!r}; problems: {kit_plugins.problems}"
        )
        return kit_plugins.functions[self.name]

    def _config(self, kit_plugins: Plugins, function: Function, when: str, tmp_path):
        specs = kit_plugins.option_specs()
        specs["functions"] = {**specs["functions"], function.name: function}
        text = (
            f'output o {{ type = "stdout" }}\nroute r {{ when {when}; to o }}\n'
            "route rest { drop }\n"
        )
        return load_config_text(text, "<kit>", specs, base_dir=tmp_path)

    def test_function_is_registered(self, kit_plugins: Plugins, function: Function) -> None:
        mine = [p for p in kit_plugins.problems if f"'{function.plugin}'" in p]
        assert not mine, mine
        assert callable(function.impl)

    def test_declared_types_are_valid(self, function: Function) -> None:
        assert function.name.isidentifier() and function.name not in RESERVED_FUNCTIONS
        assert all(p in TYPES for p in function.params), function.params
        assert function.returns in TYPES, function.returns
        assert function.help.strip(), "no help text (dsrouter plugins shows it)"

    def test_examples(self, function: Function) -> None:
        assert self.examples, "give FunctionContract.examples: [(args, expected), ...]"
        for args, expected in self.examples:
            assert len(args) == len(function.params), f"{args!r}: arity {len(function.params)}"
            got = function.impl(*args)
            assert got == expected, f"{function.name}{args!r} = {got!r}, expected {expected!r}"
            assert has_type(got, function.returns), (
                f"{function.name}{args!r} returned {type(got).__name__}, "
                f"declared {function.returns}"
            )

    def test_null_argument_gives_null_without_calling_impl(
        self, kit_plugins, function: Function, tmp_path
    ) -> None:
        calls: list[tuple] = []

        def spy(*args: Any) -> Any:
            calls.append(args)
            return function.impl(*args)

        fields = ", ".join(FIELD_OF[p] for p in function.params)
        probe = replace(function, impl=spy, pure=False)
        when = f"{function.name}({fields}) {NEVER[function.returns]}"
        config = self._config(kit_plugins, probe, when, tmp_path)
        decision = compile_routes(config).decide({"module": "system", "format": "cef"})
        assert list(decision.routes) == ["r"], "a null result must compare as null (!= is true)"
        assert calls == [], f"impl was called with a missing field: {calls}"

    def test_wrong_arity_is_a_check_error(self, kit_plugins, function: Function, tmp_path) -> None:
        args = ", ".join(['"x"'] * (len(function.params) + 1))
        with pytest.raises(ConfigError) as refused:
            self._config(kit_plugins, function, f'{function.name}({args}) == "y"', tmp_path)
        rendered = str(refused.value)
        assert "<kit>:2:" in rendered and "error[E" in rendered, rendered
