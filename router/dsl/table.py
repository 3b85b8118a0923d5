"""The compiled route table: :meth:`RouteTable.decide` on the hot path, ``explain`` for people.

For each route in file order: its condition; then its throttle (over the budget: the route does
not match and evaluation goes on); then its ``set`` actions, in order; then the first match
wins unless the route says ``continue``. Events no route claims go to ``_unmatched`` (whose
``set`` actions run too). Decisions are interned: the same set of routes yields the same object
(from a cache of at most 4,096 sets).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from dsrouter.dsl import ast
from dsrouter.dsl.compiler import ExprCompiler, Predicate, as_field, getter
from dsrouter.dsl.config import Config, Route
from dsrouter.dsl.explain import Tracer
from dsrouter.dsl.index import ANY, KEY_CLASSES, OTHER, RouteIndex, build_index, conjuncts
from dsrouter.dsl.throttle import Clock, DeferredGate, Throttle
from dsrouter.errors import Span


class Decision(NamedTuple):
    """What happens to one event: routes whose actions ran, outputs in order, dropped."""

    routes: tuple[str, ...]
    outputs: tuple[str, ...]
    dropped: bool


class RouteTrace(NamedTuple):
    """How one route treated one event (see :meth:`RouteTable.explain`).

    ``verdict``: "matched", "matched, continue", "no match", "throttled", "dropped" or
    "not reached"; ``steps``: one line per deciding sub-expression; ``throttle``: the budget
    line when the route has a throttle and its condition held.
    """

    name: str
    span: Span
    verdict: str
    steps: list[str]
    throttle: str | None


class Explanation(NamedTuple):
    """The decision plus a trace of every route, in evaluation order (``_unmatched`` last)."""

    decision: Decision
    routes: list[RouteTrace]


NO_ROUTE = Decision((), (), False)
MAX_COMBOS = 4096  # entries of each cache below (cleared when full); keys hold no event text
Setter = Callable[[dict], None]


class _Step(NamedTuple):
    pred: Callable[[dict], bool] | None
    cont: bool
    position: int
    gate: Throttle | DeferredGate | None
    setters: tuple[Setter, ...] | None
    drop: bool


_Candidate = tuple  # (pred, decision or None, _Step, position in its candidate list)


class RouteTable:
    """Routes compiled for the hot path.

    ``index=False`` evaluates every route for every event (the plain reference the indexed
    table is tested against); by default :mod:`dsrouter.dsl.index` narrows the candidates.
    """

    def __init__(
        self,
        config: Config,
        clock: Clock = time.monotonic,
        index: bool = True,
        defer_throttles: bool = False,
    ) -> None:
        unmatched = config.unmatched
        ordered = [r for r in config.routes if r is not unmatched]
        self.route_names: tuple[str, ...] = tuple(r.name for r in config.routes)
        self._routes = ordered
        self._compiler = ExprCompiler(config.functions)
        self._defer = defer_throttles
        self._steps = tuple(self._step(r, i, clock) for i, r in enumerate(ordered))
        #: True when some route has a throttle (:meth:`decide` may then raise ``Deferred``
        #: in a table built with ``defer_throttles``).
        self.throttles = any(s.gate is not None for s in self._steps)
        self._single = tuple(self._combine((i,)) for i in range(len(ordered)))
        self._cache: dict[tuple[int, ...], Decision] = {}
        self._dropped = [0] * (len(ordered) + 1)  # the last slot is _unmatched
        self._unmatched_route = unmatched
        self._unmatched = NO_ROUTE
        self._unmatched_sets: tuple[Setter, ...] = ()
        if unmatched is not None:
            self._unmatched = Decision((unmatched.name,), unmatched.outputs, unmatched.drop)
            self._unmatched_sets = tuple(self._setter(s) for s in unmatched.sets)
        self._build_candidates(build_index(ordered, self._compiler) if index else None)

    def _build_candidates(self, found: RouteIndex | None) -> None:
        """Candidate tuples: every route, and (lazily) per bucket combination of the index."""
        self._all = self._candidates([(s, s.pred) for s in self._steps])
        index = found if found is not None and found.fields else None
        self._index = index
        self.index_fields: tuple[str, ...] = index.fields if index else ()
        self._fields = tuple(zip(self.index_fields, index.keys, strict=True)) if index else ()
        self._combos: dict[tuple, tuple[_Candidate, ...]] = {}
        self._residues: dict[tuple, Predicate | None] = {}

    def _combo(self, buckets: tuple) -> tuple[_Candidate, ...]:
        """The candidates for events in ``buckets`` (see :meth:`RouteIndex.proven`)."""
        chosen = []
        index = self._index
        assert index is not None, "only called when the table is indexed"
        for step in self._steps:
            proven = index.proven(step.position, buckets)
            if proven is not None:
                chosen.append((step, self._residue(step, proven) if proven else step.pred))
        if len(self._combos) >= MAX_COMBOS:
            self._combos.clear()
        found = self._combos[buckets] = self._candidates(chosen)
        return found

    def _residue(self, step: _Step, proven: tuple[ast.Node, ...]) -> Predicate | None:
        """The route's condition without the conjuncts the index lookups already proved."""
        key = (step.position, *map(id, proven))
        if key not in self._residues:
            if len(self._residues) >= MAX_COMBOS:
                self._residues.clear()
            rest = [
                n
                for n in conjuncts(self._routes[step.position].when)
                if not any(n is p for p in proven)
            ]
            self._residues[key] = self._compiler.conjunction(rest)
        return self._residues[key]

    def _candidates(self, chosen: list[tuple[_Step, Predicate | None]]) -> tuple:
        out = []
        for pos, (step, pred) in enumerate(chosen):
            plain = not (step.cont or step.drop or step.setters or step.gate)
            out.append((pred, self._single[step.position] if plain else None, step, pos))
        return tuple(out)

    def _step(self, route: Route, i: int, clock: Clock) -> _Step:
        pred = None if route.when is None else self._compiler.predicate(route.when)
        gate = None
        if route.throttle is not None:
            t = route.throttle
            by = [self._compiler.value(f) for f in t.by]
            gate = DeferredGate() if self._defer else Throttle(t.count, float(t.window), by, clock)
        setters = tuple(self._setter(s) for s in route.sets) or None
        return _Step(pred, route.cont, i, gate, setters, route.drop)

    def _setter(self, action: ast.SetField) -> Setter:
        is_const, const = self._compiler.constant(action.expr)
        if is_const:
            stored = event_value(const)
            return make_setter(as_field(action.field), lambda e: stored)
        raw = self._compiler.value(action.expr)
        return make_setter(as_field(action.field), lambda e: event_value(raw(e)))

    def _combine(self, matched: tuple[int, ...]) -> Decision:
        routes = [self._routes[i] for i in matched]
        outputs = tuple(dict.fromkeys(o for r in routes for o in r.outputs))
        return Decision(tuple(r.name for r in routes), outputs, routes[-1].drop)

    def decide(self, event: dict) -> Decision:
        """Where ``event`` goes: first match wins unless the route says ``continue``."""
        if self._fields:
            buckets: tuple = ()
            for name, keys in self._fields:
                v = event.get(name)
                if v.__class__ in KEY_CLASSES:
                    buckets += (v if v in keys else OTHER,)
                else:
                    buckets += (OTHER if v is None else ANY,)
            candidates = self._combos.get(buckets) or self._combo(buckets)
        else:
            candidates = self._all
        for pred, decision, _, pos in candidates:
            if pred is None or pred(event):
                if decision is not None:
                    return decision
                return self._resume(event, candidates, pos)
        return self._no_route(event)

    def _resume(self, event: dict, candidates: tuple, pos: int) -> Decision:
        """The general loop from ``candidates[pos]``, whose condition held."""
        matched: tuple[int, ...] = ()
        for k in range(pos, len(candidates)):
            pred, _, step, _ = candidates[k]
            if k != pos and pred is not None and not pred(event):
                continue
            i = step.position
            if step.gate is not None and not step.gate.admit(event):
                continue
            if step.setters is not None:
                for apply in step.setters:
                    apply(event)
            if not step.cont:
                if step.drop:
                    self._dropped[i] += 1
                return self._single[i] if not matched else self._lookup((*matched, i))
            matched += (i,)
        return self._lookup(matched) if matched else self._no_route(event)

    def _no_route(self, event: dict) -> Decision:
        for apply in self._unmatched_sets:
            apply(event)
        if self._unmatched.dropped:
            self._dropped[-1] += 1
        return self._unmatched

    def _lookup(self, matched: tuple[int, ...]) -> Decision:
        decision = self._cache.get(matched)
        if decision is None:
            if len(self._cache) >= MAX_COMBOS:  # many 'continue' routes: 2**n sets at most
                self._cache.clear()
            decision = self._cache[matched] = self._combine(matched)
        return decision

    def explain(self, event: dict) -> Explanation:
        """Like :meth:`decide` (same effect on ``event`` and state), plus a trace per route."""
        tracer = Tracer(self._compiler)
        traces: list[RouteTrace] = []
        matched: tuple[int, ...] = ()
        final: int | None = None
        for step, route in zip(self._steps, self._routes, strict=True):
            if final is not None:
                traces.append(RouteTrace(route.name, route.span, "not reached", [], None))
                continue
            verdict, steps, budget = self._trace_route(step, route, event, tracer)
            traces.append(RouteTrace(route.name, route.span, verdict, steps, budget))
            if verdict in ("matched", "dropped"):
                final = step.position
            elif verdict == "matched, continue":
                matched += (step.position,)
        if final is not None:
            decision = self._lookup((*matched, final))
        else:
            decision = self._lookup(matched) if matched else self._no_route(event)
        unmatched = self._unmatched_route
        if unmatched is not None:
            got = decision is self._unmatched
            verdict = ("dropped" if unmatched.drop else "matched") if got else "not reached"
            traces.append(RouteTrace(unmatched.name, unmatched.span, verdict, [], None))
        return Explanation(decision, traces)

    def _trace_route(self, step: _Step, route: Route, event: dict, tracer: Tracer):
        steps: list[str] = []
        if route.when is not None and not tracer.evaluate(route.when, event, steps):
            return "no match", steps, None
        budget = None
        if step.gate is not None:
            admitted = step.gate.admit(event)
            budget = step.gate.describe(event, admitted)
            if not admitted:
                return "throttled", steps, budget
        for apply in step.setters or ():
            apply(event)
        if step.cont:
            return "matched, continue", steps, budget
        if step.drop:
            self._dropped[step.position] += 1
            return "dropped", steps, budget
        return "matched", steps, budget

    def counters(self) -> dict[str, dict[str, int]]:
        """``{"throttled": {route: n}, "throttle_evicted": {route: n}, "dropped": {route: n}}``.

        Throttle counters list every route with a throttle; ``dropped`` every route that drops.
        """
        throttled, evicted, dropped = {}, {}, {}
        for step, route in zip(self._steps, self._routes, strict=True):
            if step.gate is not None:
                throttled[route.name] = step.gate.throttled
                evicted[route.name] = step.gate.evicted
            if route.drop:
                dropped[route.name] = self._dropped[step.position]
        if self._unmatched_route is not None and self._unmatched_route.drop:
            dropped[self._unmatched_route.name] = self._dropped[-1]
        return {"throttled": throttled, "throttle_evicted": evicted, "dropped": dropped}


_SCALARS = frozenset({str, int, float, bool, dict})


def event_value(value: Any) -> Any:
    """What ``set`` stores: plain JSON values, as parsed events hold (durations as seconds,
    sizes as bytes, addresses and CIDR ranges as text), so every output can serialise them."""
    cls = value.__class__
    if cls in _SCALARS or value is None:
        return value
    if cls is list:
        return [event_value(v) for v in value]
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def make_setter(target: ast.Field, value: Callable[[dict], Any]) -> Setter:
    """``set FIELD = EXPR``: a null value removes the field instead of storing null."""
    if len(target.path) == 1:
        name = target.path[0]

        def set_top(event: dict) -> None:
            v = value(event)
            if v is None:
                event.pop(name, None)
            else:
                event[name] = v

        return set_top
    outer, name = target.path[0], target.path[-1]
    parent = getter(ast.Field((outer,), target.span))

    def set_nested(event: dict) -> None:
        v = value(event)
        box = parent(event)
        if box.__class__ is not dict:
            if v is None:
                return
            box = event[outer] = {}
        if v is None:
            box.pop(name, None)
        else:
            box[name] = v

    return set_nested


def compile_routes(
    config: Config,
    clock: Clock = time.monotonic,
    index: bool = True,
    defer_throttles: bool = False,
) -> RouteTable:
    """Compile a checked configuration's routes; ``clock`` drives throttle windows.

    ``index=False`` skips the candidate index (every route is tried for every event);
    ``defer_throttles=True`` (a parser process) raises ``Deferred`` where a throttle decides.
    """
    return RouteTable(config, clock, index, defer_throttles)
