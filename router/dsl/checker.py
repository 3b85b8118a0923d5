"""AST → :class:`~dsrouter.dsl.config.Config`: every name, option and route checked.

The checker never stops at the first problem: it reports every error it can find (``E2xx``
names, types and options, ``E3xx`` routing) and warnings (``W3xx``) to a :class:`Reporter`.
Expressions are checked by :mod:`dsrouter.dsl.exprcheck`, the ``cluster_*`` settings by
:mod:`dsrouter.dsl.cluster_check`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dsrouter.api import Function
from dsrouter.ds.catalog import FIELDS
from dsrouter.dsl import ast
from dsrouter.dsl.cluster_check import CLUSTER_SETTINGS, check_cluster
from dsrouter.dsl.config import Block, Config, Route
from dsrouter.dsl.diagnostics import Reporter, at, did_you_mean
from dsrouter.dsl.exprcheck import BAD, ExprChecker
from dsrouter.dsl.functions import accepts, describe, function_table
from dsrouter.dsl.secrets import inline_secret
from dsrouter.dsl.testblocks import check_tests
from dsrouter.dsl.values import INVALID, ValueContext, resolve, uses_call
from dsrouter.errors import Span
from dsrouter.options import Duration, Option

MAX_WORKERS = 64

UNMATCHED = "_unmatched"

_Action = TypeVar("_Action", ast.When, ast.To, ast.Continue, ast.Drop, ast.Throttle)

#: Fields ``set`` may not change: they describe the message as received and how it parsed.
PROTECTED_FIELDS = frozenset(
    {"module", "format", "raw", "received_at", "peer", "input", "parse_error", "syslog"}
)

SETTINGS: dict[str, Option] = {
    "data_dir": Option("data_dir", "string", "dsrouter-data", "queues, dead letters, state"),
    "metrics": Option("metrics", "address", None, "HOST:PORT for /metrics and /healthz"),
    "shutdown_timeout": Option(
        "shutdown_timeout",
        "duration",
        Duration(10.0),
        "at stop, how long to keep reading open connections and finishing sends",
    ),
    "workers": Option(
        "workers",
        "int",
        None,
        "parser processes (0: parse in the main process); default: one per core",
        validate=lambda n: None if 0 <= n <= MAX_WORKERS else f"must be 0 to {MAX_WORKERS}",
    ),
    "disable_plugins": Option(
        "disable_plugins",
        "list",
        (),
        'plugins (or distributions) never imported; "*": every installed one',
        validate=lambda names: (
            None if all(isinstance(n, str) for n in names) else "expected a list of plugin names"
        ),
    ),
    **CLUSTER_SETTINGS,
}


def check(
    items: Sequence[ast.Item],
    option_specs: Mapping[str, Mapping[str, Any]],
    ctx: ValueContext,
    files: list[Path],
) -> Config:
    """Check the spliced items of a configuration; errors go to ``ctx.reporter``.

    ``option_specs`` is :meth:`Plugins.option_specs`: ``{"input"|"output": {type: options}}``
    with options a ``tuple[Option, ...]``, and ``{"functions": {name: Function}}``.
    """
    rep = ctx.reporter
    input_specs: Mapping[str, tuple[Option, ...]] = option_specs.get("input", {})
    output_specs: Mapping[str, tuple[Option, ...]] = option_specs.get("output", {})
    plugin_functions: Mapping[str, Function] = option_specs.get("functions", {})
    settings = _settings([i for i in items if isinstance(i, ast.Settings)], ctx)
    _plugin_problems(option_specs, items, rep)
    checks = option_specs.get("checks", {})
    inputs = _blocks("input", items, input_specs, ctx, checks.get("input", {}))
    outputs = _blocks("output", items, output_specs, ctx, checks.get("output", {}))
    output_names = {b.name for b in outputs}
    functions = function_table(plugin_functions)
    exprs = ExprChecker(ctx, {n: f.type for n, f in FIELDS.items()}, functions)
    decls = [r for r in items if isinstance(r, ast.RouteDecl)]
    routes = [_route(r, output_names, exprs) for r in decls]
    _unique("route", [r.name for r in items if isinstance(r, ast.RouteDecl)], rep)
    unmatched = next((r for r in routes if r.name == UNMATCHED), None)
    ordered = [r for r in routes if r.name != UNMATCHED]
    _accounting(ordered, unmatched, items, rep, files)
    tests = check_tests(
        [t for t in items if isinstance(t, ast.TestDecl)],
        [r.name for r in routes],
        output_names,
        ctx,
        exprs.field_type,
    )
    return Config(
        settings=settings,
        inputs=inputs,
        outputs=outputs,
        routes=routes,
        tests=tests,
        warnings=[],
        files=files,
        base_dir=ctx.base_dir,
        unmatched=unmatched,
        functions=functions,
    )


# ---- settings ---------------------------------------------------------------------------


def _settings(blocks: list[ast.Settings], ctx: ValueContext) -> dict[str, Any]:
    for extra in blocks[1:]:
        help = f"the first settings block is at {at(blocks[0].span)}"
        ctx.reporter.error("E216", "only one settings block is allowed", extra.span, help)
    opts = [o for b in blocks for o in b.options]
    values, given = _options(opts, SETTINGS, "settings", ctx)
    absent = check_cluster(opts, values, given, ctx.reporter)  # no cluster: no cluster_* keys
    values = {k: values.get(k, s.default) for k, s in SETTINGS.items() if k not in absent}
    data_dir = Path(values["data_dir"]) if isinstance(values["data_dir"], str) else Path()
    values["data_dir"] = Path(os.path.normpath(ctx.base_dir / data_dir))
    return values


def _plugin_problems(specs: Mapping[str, Any], items: Sequence[ast.Item], rep: Reporter) -> None:
    """W401 for each plugin that failed to load; W402 for a disabled name nothing has."""
    for problem in specs.get("problems", ()):
        rep.warning("W401", problem, None, "what it would have registered is unavailable")
    known = specs.get("plugin_names")
    if known is None:
        return
    for item in items:
        for opt in item.options if isinstance(item, ast.Settings) else ():
            if opt.key.text != "disable_plugins" or not isinstance(opt.value, ast.ListValue):
                continue
            for v in opt.value.items:
                if isinstance(v, ast.Literal) and v.value not in known and v.value != "*":
                    help = did_you_mean(str(v.value), known) or "see dsrouter plugins"
                    rep.warning("W402", f"no installed plugin is named {v.value!r}", v.span, help)


# ---- input and output blocks ------------------------------------------------------------


def _blocks(
    kind: str,
    items: Sequence[ast.Item],
    specs: Mapping[str, tuple[Option, ...]],
    ctx: ValueContext,
    checks: Mapping[str, Any] | None = None,
) -> list[Block]:
    decls = [b for b in items if isinstance(b, ast.BlockDecl) and b.kind == kind]
    _unique(kind, [d.name for d in decls], ctx.reporter)
    blocks = [_block(d, specs, ctx) for d in decls]
    for decl, block in zip(decls, blocks, strict=True):
        _cross_check(decl, block, (checks or {}).get(block.type), ctx.reporter)
    return blocks


def _cross_check(decl: ast.BlockDecl, block: Block, check: Any, rep: Reporter) -> None:
    """A type's check across its options (E225), once each option is valid on its own."""
    if check is None or not block.type:
        return
    try:
        problems = list(check(block.options))
    except Exception as exc:  # a plugin's check must not crash `check`
        problems = [f"its option check failed ({type(exc).__name__})"]
    for problem in problems:
        where = f"{decl.kind} '{decl.name.text}' (type \"{block.type}\")"
        rep.error("E225", f"{where}: {problem}", decl.name.span)


def _block(decl: ast.BlockDecl, specs: Mapping, ctx: ValueContext) -> Block:
    rep = ctx.reporter
    type_opts = [o for o in decl.options if o.key.text == "type"]
    rest = tuple(o for o in decl.options if o.key.text != "type")
    where = f"{decl.kind} '{decl.name.text}'"
    type_name = _block_type(decl, type_opts, specs, ctx)
    if type_name is None:
        _duplicate_keys(rest, rep)  # still report what can be checked without the type
        return Block(decl.name.text, "", {}, decl.span)
    table = {o.name: o for o in specs[type_name]}
    values, given = _options(rest, table, where, ctx)
    for name, spec in table.items():
        if name in given:
            continue
        if spec.required:
            msg = f"{where} (type \"{type_name}\") is missing required option '{name}'"
            rep.error("E205", msg, decl.name.span, spec.help or None)
        else:
            values[name] = spec.default
    return Block(decl.name.text, type_name, values, decl.span)


def _block_type(decl: ast.BlockDecl, type_opts: list, specs: Mapping, ctx) -> str | None:
    rep = ctx.reporter
    if not type_opts:
        rep.error(
            "E203",
            f"{decl.kind} '{decl.name.text}' has no type",
            decl.name.span,
            f'add type = "..." (one of: {", ".join(sorted(specs))})',
        )
        return None
    for extra in type_opts[1:]:
        rep.error("E208", "option 'type' is given twice", extra.key.span)
    node = type_opts[0].value
    value = resolve(node, ctx)
    if value is INVALID:
        return None
    if not isinstance(value, str) or value not in specs:
        known = ", ".join(f'"{n}"' for n in sorted(specs)) or "none registered"
        shown = f' "{value}"' if isinstance(value, str) and not uses_call(node) else ""
        help = did_you_mean(value, specs) if isinstance(value, str) else None
        msg = f"unknown {decl.kind} type{shown}"
        help = help or f"known {decl.kind} types: {known}"
        if ctx.plugin_problems:
            help += "; a plugin failed to load, see the W401 warnings"
        rep.error("E202", msg, node.span, help)
        return None
    return value


def _options(
    opts: Sequence[ast.Option], table: Mapping[str, Option], where: str, ctx
) -> tuple[dict[str, Any], set[str]]:
    """Resolve and check options against their specs: ``(valid values, keys given)``."""
    rep = ctx.reporter
    _duplicate_keys(opts, rep)
    values: dict[str, Any] = {}
    given: set[str] = set()
    for opt in opts:
        key = opt.key.text
        spec = table.get(key)
        if spec is None:
            help = did_you_mean(key, table) or "known options: " + ", ".join(sorted(table))
            rep.error("E204", f"unknown option '{key}' in {where}", opt.key.span, help)
            continue
        if key in given:
            continue  # reported by _duplicate_keys
        given.add(key)
        if spec.secret:
            inline_secret(opt, where, rep)
        raw = resolve(opt.value, ctx)
        if raw is INVALID:
            continue
        value, problem = spec.check(raw)
        if problem is not None:
            hidden = spec.secret or uses_call(opt.value)
            detail = f"expected a value of kind '{spec.kind}'" if hidden else problem
            rep.error(
                "E206",
                f"invalid value for option '{key}' in {where}: {detail}",
                opt.value.span,
                spec.help or None,
            )
            continue
        values[key] = value
    return values, given


def _duplicate_keys(opts: Sequence[ast.Option], rep: Reporter) -> None:
    first: dict[str, ast.Option] = {}
    for opt in opts:
        if opt.key.text in first:
            help = f"first given at {at(first[opt.key.text].key.span)}"
            rep.error("E208", f"option '{opt.key.text}' is given twice", opt.key.span, help)
        else:
            first[opt.key.text] = opt


def _unique(kind: str, names: Sequence[ast.Name], rep: Reporter) -> None:
    seen: dict[str, ast.Name] = {}
    for name in names:
        if name.text.startswith("_") and not (kind == "route" and name.text == UNMATCHED):
            help = "names starting with '_' are reserved" + (
                f"; did you mean '{UNMATCHED}'?" if kind == "route" else ""
            )
            rep.error("E209", f"{kind} name '{name.text}' is reserved", name.span, help)
        if name.text in seen:
            help = f"first defined at {at(seen[name.text].span)}"
            rep.error("E207", f"duplicate {kind} name '{name.text}'", name.span, help)
        else:
            seen[name.text] = name


# ---- routes -----------------------------------------------------------------------------


def _route(decl: ast.RouteDecl, output_names: set[str], exprs: ExprChecker) -> Route:
    rep = exprs.rep
    first: dict[type, ast.Action] = {}
    for action in decl.actions:
        word = ast.ACTION_WORDS[type(action)]
        if type(action) in first and not isinstance(action, ast.SetField):
            help = f"first '{word}' is at {at(first[type(action)].span)}"
            msg = f"'{word}' appears twice in route '{decl.name.text}'"
            rep.error("E303", msg, action.span, help)
            continue
        first.setdefault(type(action), action)
    when, to = _first(first, ast.When), _first(first, ast.To)
    drop, cont = _first(first, ast.Drop), _first(first, ast.Continue)
    throttle = _first(first, ast.Throttle)
    condition = None if when is None else exprs.condition(when.expr)
    if throttle is not None:
        _throttle(throttle, exprs)
    sets = tuple(_set(a, exprs) for a in decl.actions if isinstance(a, ast.SetField))
    outputs = _targets(to, output_names, rep) if to is not None else ()
    _route_shape(decl, when, to, drop, cont, rep)
    if throttle is not None and decl.name.text == UNMATCHED:
        help = f"'{UNMATCHED}' receives exactly the events no route claimed"
        rep.error("E305", f"route '{UNMATCHED}' cannot use 'throttle'", throttle.span, help)
    return Route(
        decl.name.text,
        condition,
        outputs,
        cont is not None,
        drop is not None,
        decl.span,
        decl.name.span,
        throttle,
        sets,
    )


def _first(first: Mapping[type, ast.Action], kind: type[_Action]) -> _Action | None:
    """The first action of type ``kind`` in a route, if it has one."""
    action = first.get(kind)
    return action if isinstance(action, kind) else None


def _throttle(action: ast.Throttle, exprs: ExprChecker) -> None:
    if action.count < 1 or action.window <= 0:
        help = "write e.g. throttle 10 per 1m: at least 1 event per window longer than 0"
        exprs.rep.error("E236", "throttle needs a count and a window above zero", action.span, help)
    for field in action.by:
        exprs.value(field)


def _set(action: ast.SetField, exprs: ExprChecker) -> ast.SetField:
    """Check ``set FIELD = EXPR``; a new name becomes known to later expressions."""
    expr, typ = exprs.scalar(action.expr)
    target = action.field
    if isinstance(target, ast.Subscript):
        exprs.value(target)
        return ast.SetField(target, expr, action.span)
    name = target.dotted
    if target.ext:
        return ast.SetField(target, expr, action.span)
    if name in PROTECTED_FIELDS or (name.startswith("syslog.") and name in FIELDS):
        help = "it describes the message as received; set a new field instead"
        exprs.rep.error("E235", f"'set' cannot change the field '{name}'", target.span, help)
    elif len(target.path) > 2 or (len(target.path) == 2 and target.path[0] != "syslog"):
        help = 'set a top-level field, syslog.NAME, or ext["key"]'
        exprs.rep.error("E235", f"'set' cannot create the nested field '{name}'", target.span, help)
    known = exprs.fields.get(name)
    if known is not None and BAD not in (typ,) and not accepts(known, typ):
        msg = f"field '{name}' holds {describe(known)}, but the value is {describe(typ)}"
        exprs.rep.error("E231", msg, action.expr.span)
    if known is None:
        exprs.fields[name] = "any" if typ == BAD else typ
    return ast.SetField(target, expr, action.span)


def _targets(to: ast.To, output_names: set[str], rep: Reporter) -> tuple[str, ...]:
    names: list[str] = []
    for target in to.targets:
        if target.text not in output_names:
            help = did_you_mean(target.text, output_names)
            if help is None:
                known = ", ".join(sorted(output_names)) or "none are declared"
                help = f"declared outputs: {known}"
            rep.error("E201", f"unknown output '{target.text}'", target.span, help)
        elif target.text not in names:
            names.append(target.text)
    return tuple(names)


def _route_shape(decl, when, to, drop, cont, rep: Reporter) -> None:
    name = decl.name.text
    if drop is not None and to is not None:
        later = max(drop, to, key=lambda a: (a.span.line, a.span.column))
        rep.error(
            "E302",
            f"route '{name}' cannot both 'drop' and send 'to' outputs",
            later.span,
            "drop discards the event; remove one of them",
        )
    if drop is not None and cont is not None:
        rep.error(
            "E306",
            f"route '{name}' has 'continue' after 'drop'",
            cont.span,
            "drop stops evaluation; remove 'continue'",
        )
    if drop is None and to is None:
        rep.error(
            "E304",
            f"route '{name}' neither sends 'to' an output nor drops",
            decl.name.span,
            "add 'to OUTPUT, ...' or 'drop'",
        )
    if name == UNMATCHED:
        for action in (when, cont):
            if action is not None:
                word = ast.ACTION_WORDS[type(action)]
                rep.error(
                    "E305",
                    f"route '{UNMATCHED}' cannot use '{word}'",
                    action.span,
                    f"'{UNMATCHED}' receives exactly the events no route claimed",
                )


def _at_name(route: Route) -> str:
    """``path:line:column`` of a route's name (checked routes always carry it)."""
    return at(route.name_span or route.span)


def _accounting(
    ordered: list[Route], unmatched: Route | None, items, rep: Reporter, files: list[Path]
) -> None:
    catch_all: Route | None = None
    for route in ordered:
        if catch_all is not None:
            help = f"route '{catch_all.name}' at {_at_name(catch_all)} claims every event"
            rep.warning("W301", f"route '{route.name}' can never match", route.name_span, help)
        elif route.when is None and not route.cont:
            catch_all = route
    if unmatched is not None and catch_all is not None:
        help = f"route '{catch_all.name}' at {_at_name(catch_all)} claims every event"
        rep.warning("W302", f"route '{UNMATCHED}' never receives events", unmatched.name_span, help)
    if unmatched is None and catch_all is None:
        last = ordered[-1] if ordered else None
        span = last.name_span if last is not None else _first_span(items, files)
        help = f"end with a route without 'when', or add: route {UNMATCHED} {{ to ... }}"
        rep.error("E301", "the configuration does not account for every event", span, help)


def _first_span(items, files: list[Path]) -> Span | None:
    """Where to point when there is no route at all: the first item, else the file's start."""
    if items:
        return items[0].span
    return Span(str(files[0]), 1, 1) if files else None


__all__ = ["SETTINGS", "UNMATCHED", "check"]
