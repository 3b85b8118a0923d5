"""What ``dry-run`` prints besides the per-event lines: route traces, tallies, coverage, progress.

Nothing here runs per event except :meth:`Tally.add` (one dict increment on an interned
decision) and :meth:`Progress.update` (called once per batch, writes at most a few times a
second). Rendering happens once, at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from dsrouter.dsl.checker import UNMATCHED
from dsrouter.dsl.diagnostics import at as where

PROGRESS_MIN_LINES = 2000  # shorter inputs finish before a bar would help
PROGRESS_INTERVAL = 0.25  # seconds between redraws


# ---- explain ----------------------------------------------------------------------------


def explain_json(explanation: Any) -> list[dict]:
    """The route traces of one event as JSON-ready dicts, in route order."""
    return [
        {
            "route": t.name,
            "at": where(t.span),
            "verdict": t.verdict,
            "steps": list(t.steps),
            "throttle": t.throttle,
        }
        for t in explanation.routes
    ]


def render_explain(explanation: Any) -> str:
    """Every route in order with its verdict, the steps behind it and the throttle state."""
    traces = explanation.routes
    width = max((len(t.name) for t in traces), default=0)
    lines = []
    for t in traces:
        lines.append(f"    {t.name:<{width}}  {t.verdict:<17}  ({where(t.span)})")
        lines.extend(f"        {step}" for step in t.steps)
        if t.throttle:
            lines.append(f"        throttle: {t.throttle}")
    lines.append("    => " + outcome(explanation.decision))
    return "\n".join(lines) + "\n"


def outcome(decision: Any) -> str:
    """``routes: a, b; outputs: x, y`` or ``...; DROPPED``: where one event ended up."""
    routes = ", ".join(decision.routes) or "(none)"
    if decision.dropped:
        return f"routes: {routes}; DROPPED"
    return f"routes: {routes}; outputs: {', '.join(decision.outputs) or '(none)'}"


# ---- tallies and coverage ---------------------------------------------------------------


class Tally:
    """Counts decisions during a dry-run; per-route and per-output totals on demand."""

    def __init__(self, route_names: Sequence[str]) -> None:
        self.route_names = list(route_names)
        if UNMATCHED not in self.route_names:
            self.route_names.append(UNMATCHED)
        self._decisions: dict[Any, int] = {}

    def add(self, decision: Any) -> None:
        """Count one event's decision (decisions are interned, so this stays a small dict)."""
        self._decisions[decision] = self._decisions.get(decision, 0) + 1

    @property
    def events(self) -> int:
        """How many events were counted."""
        return sum(self._decisions.values())

    def totals(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        """``(matched per route, dropped per route, events per output)`` in declaration order."""
        matched = dict.fromkeys(self.route_names, 0)
        dropped = dict.fromkeys(self.route_names, 0)
        outputs: dict[str, int] = {}
        for d, n in self._decisions.items():
            for r in d.routes or (UNMATCHED,):
                matched[r] = matched.get(r, 0) + n
            if d.dropped and d.routes:
                dropped[d.routes[-1]] = dropped.get(d.routes[-1], 0) + n
            for o in d.outputs:
                outputs[o] = outputs.get(o, 0) + n
        return matched, dropped, outputs

    @property
    def dropped(self) -> int:
        """How many events a ``drop`` route claimed."""
        return sum(n for d, n in self._decisions.items() if d.dropped)

    def summary(self, counters: dict, output_names: Sequence[str] = ()) -> str:
        """The closing table: events and drops, then per route and per output counts."""
        matched, dropped, outputs = self.totals()
        throttled = counters.get("throttled", {})
        names = list(matched)
        width = max(len(n) for n in [*names, "route", *output_names, *outputs])
        lines = [f"\n{self.events} event(s); {self.dropped} dropped"]
        lines.append(f"  {'route':<{width}}  {'matched':>8}  {'dropped':>8}  {'throttled':>9}")
        for name in names:
            lines.append(
                f"  {name:<{width}}  {matched[name]:>8}  {dropped.get(name, 0):>8}"
                f"  {throttled.get(name, 0):>9}"
            )
        lines.append(f"  {'output':<{width}}  {'events':>8}")
        for name in dict.fromkeys([*output_names, *outputs]):
            lines.append(f"  {name:<{width}}  {outputs.get(name, 0):>8}")
        evicted = {r: n for r, n in counters.get("throttle_evicted", {}).items() if n}
        if evicted:
            detail = ", ".join(f"{r} {n}" for r, n in evicted.items())
            lines.append(f"throttle keys evicted (table full): {detail}")
        return "\n".join(lines) + "\n"

    def coverage(self) -> str:
        """How many events each route claimed, and every route that never matched."""
        matched, _, _ = self.totals()
        total = self.events or 1
        width = max(len(n) for n in matched)
        hit = [n for n, c in matched.items() if c]
        lines = [
            f"\ncoverage: {len(hit)} of {len(matched)} route(s) matched over {self.events} event(s)"
        ]
        for name, count in matched.items():
            lines.append(f"  {name:<{width}}  {count:>8}  {100 * count / total:5.1f}%")
        never = [n for n, c in matched.items() if not c]
        lines.append("never matched: " + (", ".join(never) if never else "(none)"))
        return "\n".join(lines) + "\n"


# ---- progress ---------------------------------------------------------------------------


def render_progress(done: int, total: int, elapsed: float, width: int = 30) -> str:
    """One progress line, starting with ``\\r`` so it overwrites the previous one."""
    frac = min(1.0, done / total) if total > 0 else 1.0
    filled = int(frac * width)
    bar = "#" * filled + "-" * (width - filled)
    rate = f"{done / elapsed:,.0f}/s" if elapsed > 0 else "-/s"
    return f"\r[{bar}] {frac:4.0%}  {done:,}/{total:,} lines  {rate}"


class Progress:
    """A ``\\r`` progress bar on a terminal stream, redrawn at most every ``interval`` seconds."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.stream, self.interval, self.clock = total, stream, interval, clock
        self.done = 0
        self.start = clock()
        self._last = float("-inf")
        self._width = 0

    def update(self, n: int) -> None:
        """Advance by ``n`` lines; redraw only when ``interval`` has passed."""
        self.done += n
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state, then clear the line so later output starts clean."""
        self._draw(self.clock())
        self.stream.write("\r" + " " * self._width + "\r")
        self.stream.flush()

    def _draw(self, now: float) -> None:
        line = render_progress(self.done, self.total, now - self.start)
        self._width = max(self._width, len(line) - 1)
        self.stream.write(line)
        self.stream.flush()


def progress_for(total: int, stream: TextIO) -> Progress | None:
    """A progress bar when ``stream`` is a terminal and the input is long; else None."""
    isatty = getattr(stream, "isatty", None)
    if total <= PROGRESS_MIN_LINES or isatty is None or not isatty():
        return None
    return Progress(total, stream)
