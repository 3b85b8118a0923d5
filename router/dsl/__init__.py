"""The configuration language: grammar, AST, checker and compiler to route closures.

    load_config(path, option_specs) / load_config_text(text, ...)  →  Config
    compile_routes(config)                                          →  RouteTable
    RouteTable.decide(event)                                        →  Decision

Errors are raised together as one :class:`dsrouter.errors.ConfigError`; warnings are kept on
``Config.warnings``. Codes are documented in ``docs/errors.md``.
"""

from dsrouter.dsl import ast
from dsrouter.dsl.compiler import Decision, RouteTable, compile_expr, compile_routes
from dsrouter.dsl.config import Block, Config, Route
from dsrouter.dsl.loader import load_config, load_config_text

__all__ = [
    "Block",
    "Config",
    "Decision",
    "Route",
    "ast",
    "RouteTable",
    "compile_expr",
    "compile_routes",
    "load_config",
    "load_config_text",
]
