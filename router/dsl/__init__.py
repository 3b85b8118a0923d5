"""The configuration language: grammar, AST, checker and compiler to route closures.

    load_config(path, option_specs) / load_config_text(text, ...)  →  Config
    compile_routes(config, clock=time.monotonic)                    →  RouteTable
    RouteTable.decide(event)                                        →  Decision
    RouteTable.explain(event)                                       →  Explanation
    RouteTable.counters()                                           →  {"throttled": ..., ...}

Errors are raised together as one :class:`dsrouter.errors.ConfigError`; warnings are kept on
``Config.warnings``. Codes are documented in ``docs/errors.md``.
"""

from dsrouter.dsl import ast
from dsrouter.dsl.compiler import compile_expr
from dsrouter.dsl.config import Block, Config, Route
from dsrouter.dsl.loader import load_config, load_config_text
from dsrouter.dsl.table import Decision, Explanation, RouteTable, RouteTrace, compile_routes

__all__ = [
    "Block",
    "Config",
    "Decision",
    "Explanation",
    "Route",
    "ast",
    "RouteTable",
    "RouteTrace",
    "compile_expr",
    "compile_routes",
    "load_config",
    "load_config_text",
]
