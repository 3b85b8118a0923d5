"""Messages → normalized DS events (plain dicts), fast path first.

The fast path is ONE regex that matches the shapes DS and common relays send — ``<PRI>`` with
an RFC 3164 or ISO time stamp and a one-word host, or an RFC 5424 header — together with the
seven CEF header fields when they hold no backslash, and the first extension key; one
``re.split`` then cuts the rest of the extension. Anything else (LEEF, escaped header fields,
missing PRI or host, hosts with spaces, tags, octet counts, junk) takes the careful path built
from :mod:`dsrouter.syslog`, :mod:`dsrouter.ds.cef` and :mod:`dsrouter.ds.leef`. Both paths
build the header part (with ``module``, classified once per distinct CEF header on the fast
path) and end in :func:`_assemble`, which types values, derives ``host``/``host_id``/tenant,
adds the slot aliases and the receipt fields. Extension keys that collide with reserved
names never reach the fast path's merge: such messages take the careful path, which moves
them under ``ext_shadowed``.

The per-event path allocates only the event, its ``syslog`` dict, the split parts and the
tuple of their keys; the caches (header → header fields, extension keys → integer-typed keys,
RFC 3164 stamp → ISO, digit text → int) are bounded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable
from itertools import islice
from typing import Any

import orjson

from dsrouter.ds.catalog import ALIASES, INT_ALIASES, INT_KEYS, LEEF_TO_CEF, RESERVED, classify
from dsrouter.ds.cef import KEY, clean_pairs, parse_cef, split_extension, unescape_last
from dsrouter.ds.leef import parse_leef
from dsrouter.syslog import (
    BODY_MARK,
    ISO_TS,
    SD,
    parse_envelope,
    parse_structured_data,
    rfc3164_cache,
    rfc3164_to_iso,
    strip_octet_count,
)

__all__ = ["parse_message"]

Event = dict[str, Any]
Receipt = tuple[str, str, str, str]

_FAST = re.compile(
    r"<(\d{1,3})>(?:"
    rf"(?:([A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d)|({ISO_TS})) (\S*[^\s:]) "
    rf"|1 (\S+) (\S+) (\S+) (\S+) (\S+) ({SD}) \ufeff?"
    r")CEF: ?(\d{1,3})\|" + r"([^|\\]*)\|" * 6 + rf"({KEY})=(.*)",
    re.S,
)
Aliases = tuple[tuple[str, str, bool], ...]
#: A CEF header's fields (with ``module``), its module's aliases, and the fields' JSON with
#: no closing brace (the compiled cut writes the extension's pairs after it).
Head = tuple[Event, Aliases, bytes]
_heads: dict[str, Head] = {}
_known_ints: dict[str, int | str] = {}
#: An extension's keys, in order → its integer-typed keys: DS sends a few dozen key sequences
#: (21 in the benchmark's 100,000 events). Kept for messages of up to _SHAPE_TEXT characters
#: and _SHAPE_KEYS keys, _SHAPES sequences at most.
_shapes: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHAPE_TEXT, _SHAPE_KEYS, _SHAPES = 4096, 128, 1024
_ALIASES = {
    m: tuple((s, a, a in INT_ALIASES, s in RESERVED) for s, a in pairs)
    for m, pairs in ALIASES.items()
}
_INT_KEYS = tuple(sorted(INT_KEYS))
_LEEF_KEYS = tuple(LEEF_TO_CEF.items())
_SEVERITY_WORDS = {"low": 3, "medium": 6, "high": 8, "very-high": 10}
#: Fast path: aliases of slots that can be present (no reserved slot), as (slot, alias, to_int).
_FAST_ALIASES = {
    m: tuple((s, a, a in INT_ALIASES and s not in INT_KEYS) for s, a, _, r in v if not r)
    for m, v in _ALIASES.items()
}
#: PRI digits as the fast regex captures them (``\d{1,3}``) → (facility, severity).
_PRI = {f"{p:0{w}d}": divmod(p, 8) for p in range(192) for w in (1, 2, 3) if len(f"{p:0{w}d}") == w}
_split = split_extension
#: Extension keys kept per message (memory and field count may not follow what a sender chooses).
MAX_KEYS = 512


def _int(text: str) -> int | str:
    """The int a text holds (``-?[0-9]{1,18}``), else the text itself (lossless)."""
    if text.isdigit():
        if text.isascii() and len(text) < 19:
            return int(text)
    elif text[:1] == "-" and text[1:].isdigit() and text.isascii() and len(text) < 20:
        return int(text)
    return text


def _severity(text: str) -> int | None:
    value = _int(text)
    return value if isinstance(value, int) else _SEVERITY_WORDS.get(text.lower())


def _ints(ev: Event, int_keys: Iterable[str]) -> None:
    """Turn the values of ``int_keys`` into ints where the text is one (``-?[0-9]{1,18}``)."""
    known = _known_ints  # a dict lookup of known digit strings is ~4x cheaper than int()
    for k in int_keys:
        v = ev[k]
        number = known.get(v)
        ev[k] = _new_int(v) if number is None else number


def _assemble(ev: Event, int_keys: Collection[str], env: dict, receipt: Receipt) -> Event:
    """Type the extension values in ``ev``, derive fields, add the receipt fields.

    ``ev`` holds the header fields (with ``module``) followed by the extension pairs, none of
    which collides with a reserved name.
    """
    if int_keys:
        _ints(ev, int_keys)
    get = ev.get
    host = get("dvchost") or get("dvc") or env.get("hostname")
    if host:
        ev["host"] = host
    if "cn1" in ev and ev["cn1"].__class__ is int:
        ev["host_id"] = ev["cn1"]
    if "TrendMicroDsTenant" in ev:
        ev["tenant"] = ev["TrendMicroDsTenant"]
    if "TrendMicroDsTenantId" in ev:
        ev["tenant_id"] = ev["TrendMicroDsTenantId"]
    for slot, alias, as_int, shadowed in _ALIASES.get(ev["module"], ()):
        v = get("ext_shadowed", {}).get(slot) if shadowed else get(slot)
        if v is not None:
            ev[alias] = _int(v) if as_int and v.__class__ is str else v
    ev["syslog"] = env
    ev["received_at"], ev["peer"], ev["input"], ev["raw"] = receipt
    return ev


def _merge(head: Event, ext: dict[str, Any], env: dict, receipt: Receipt) -> Event:
    """Careful path: cap the number of keys, move colliding ones aside, then assemble."""
    if len(ext) > MAX_KEYS:
        ext = dict(islice(ext.items(), MAX_KEYS))
        head.setdefault(
            "parse_error", f"more than {MAX_KEYS} extension keys: the rest is only in raw"
        )
    if not RESERVED.isdisjoint(ext):
        head["ext_shadowed"] = {k: ext.pop(k) for k in [k for k in ext if k in RESERVED]}
    head.update(ext)
    return _assemble(head, INT_KEYS.intersection(ext), env, receipt)


def _cef_head(
    version: str, vendor: str, product: str, pver: str, sig: str, name: str, sev: str
) -> Event:
    head: Event = {
        "format": "cef",
        "vendor": vendor,
        "product": product,
        "product_version": pver,
        "signature_id": _int(sig),
        "name": name,
    }
    severity = _severity(sev.strip())  # "8 " is 8 on both paths
    if severity is not None:
        head["severity"] = severity
    head["cef_version"] = int(version)
    head["module"] = classify(product, head["signature_id"])
    return head


def _new_head(m: re.Match, header: str) -> Head:
    """The header part of the event for one CEF header text, cached (bounded)."""
    head = _cef_head(*m.group(11, 12, 13, 14, 15, 16, 17))
    entry = head, _FAST_ALIASES.get(head["module"], ()), orjson.dumps(head)[:-1]
    if len(header) <= 512:  # bounded memory: 4096 entries of at most ~1 KiB
        if len(_heads) >= 4096:
            _heads.clear()
        _heads[header] = entry
    return entry


def _front(text: str, now: float, stamps: dict[str, str]) -> tuple[re.Match, dict] | None:
    """The fast regex's match and the envelope; None sends the message to the careful path."""
    m = _FAST.match(text)
    if m is None:
        return None
    pri, bsd, host = m.group(1, 2, 4)
    pri = _PRI.get(pri)
    if pri is None:
        return None
    if host is not None and ("CEF:" in host or "LEEF:" in host):
        return None  # a host that looks like a body: the careful path starts at the first mark
    if host is None:
        return m, _env5424(*pri, *m.group(5, 6, 7, 8, 9, 10))
    iso = m.group(3) if bsd is None else stamps.get(bsd) or rfc3164_to_iso(bsd, now)
    if iso is None:
        return None
    return m, {"facility": pri[0], "severity": pri[1], "timestamp": iso, "hostname": host}


def _head(m: re.Match, text: str) -> Head:
    header = text[m.start(11) : m.start(18)]
    return _heads.get(header) or _new_head(m, header)


def _fast(text: str, receipt: Receipt, now: float, stamps: dict[str, str]) -> Event | None:
    """The common shapes in one regex; None sends the message to the careful path."""
    front = _front(text, now, stamps)
    if front is None:
        return None
    m, env = front
    key, rest = m.group(18, 19)
    if rest[-1:].isspace():  # the careful path's rstrip(): FF, VT and \x1c-\x1f too
        rest = rest.rstrip()
    parts = _split(rest)  # [v1, k2, v2, ...]
    shape = (key, *parts[1::2])
    int_keys = _shapes.get(shape)
    if int_keys is None:
        int_keys = _new_shape(shape, len(text))
        if int_keys is None:
            return None  # a hostile or odd key: the careful path keeps it aside
    head, aliases, _ = _head(m, text)
    it = iter(parts)
    if "  " in rest:  # values to strip: clean them apart from the header fields
        ext = {key: next(it)}
        ext.update(zip(it, it, strict=False))
        ev = head | clean_pairs(ext, rest)
    else:
        ev = head.copy()
        ev[key] = next(it)
        ev.update(zip(it, it, strict=False))
        if "\\" in rest:
            unescape_last(ev, len(ev) - len(head), rest)
    if int_keys:
        _ints(ev, int_keys)
    return _finish(ev, env, aliases, receipt)


def _finish(ev: Event, env: dict, aliases: Aliases, receipt: Receipt) -> Event:
    """The fast path's derived fields (host, tenant, slot aliases) and receipt fields."""
    get = ev.get
    host = get("dvchost") or get("dvc") or env.get("hostname")
    if host:
        ev["host"] = host
    v = get("cn1")
    if v.__class__ is int:
        ev["host_id"] = v
    if "TrendMicroDsTenant" in ev:
        ev["tenant"] = ev["TrendMicroDsTenant"]
    if "TrendMicroDsTenantId" in ev:
        ev["tenant_id"] = ev["TrendMicroDsTenantId"]
    known = _known_ints
    for slot, alias, as_int in aliases:
        v = get(slot)
        if v is not None:
            if as_int:
                number = known.get(v)
                v = _new_int(v) if number is None else number
            ev[alias] = v
    ev["syslog"] = env
    ev["received_at"], ev["peer"], ev["input"], ev["raw"] = receipt
    return ev


def _new_shape(shape: tuple[str, ...], size: int) -> tuple[str, ...] | None:
    """The integer-typed keys among an extension's keys (in order), remembered for a message
    of ``size`` characters when it is short; None sends the message to the careful path (more
    than :data:`MAX_KEYS` keys, or a reserved one)."""
    if len(shape) > MAX_KEYS or not RESERVED.isdisjoint(shape):
        return None
    present = set(shape)
    int_keys = tuple(k for k in _INT_KEYS if k in present)
    if size <= _SHAPE_TEXT and len(shape) <= _SHAPE_KEYS:
        if len(_shapes) >= _SHAPES:  # bounded memory: a few MiB at most
            _shapes.clear()
        _shapes[shape] = int_keys
    return int_keys


def _new_int(text: str) -> int | str:
    """:func:`_int`, remembered for short texts (a dict lookup is ~4x cheaper than int())."""
    number = _int(text)
    if len(text) <= 8:
        if len(_known_ints) > 100_000:  # bounded memory
            _known_ints.clear()
        _known_ints[text] = number
    return number


def _env5424(facility: int, severity: int, *fields: str) -> dict:
    env: dict = {"facility": facility, "severity": severity, "version": 1}
    for k, v in zip(("timestamp", "hostname", "appname", "procid", "msgid"), fields, strict=False):
        if v != "-":
            env[k] = v
    if fields[5] != "-":
        env["structured_data"] = parse_structured_data(fields[5])
    return env


#: rsyslog's and syslog-ng's RFC 5424 output of a DS message: APP-NAME ``CEF`` or ``LEEF`` and
#: a message holding the rest of the header (``0|Trend Micro|...``, ``2.0|Trend Micro|...``).
_RELAYED = frozenset({"CEF", "LEEF"})
_RELAYED_REST = re.compile(r" ?\d{1,3}(?:\.\d{1,2})?\|")


def _slow(text: str, receipt: Receipt, now: float) -> Event:
    env, body, error = parse_envelope(strip_octet_count(text).rstrip(), now)
    if not body.startswith(("CEF:", "LEEF:")):
        mark = BODY_MARK.search(body)
        if mark is not None:
            body = body[mark.start() :]
        elif env.get("appname") in _RELAYED and _RELAYED_REST.match(body):
            body = f"{env['appname']}:{body}"  # a relay took "CEF:" / "LEEF:" as the APP-NAME
    if body.startswith("CEF:"):
        fields, ext, problem = parse_cef(body)
        head = _cef_head(*fields) if fields else {"format": "cef"}
    elif body.startswith("LEEF:"):
        fields, ext, problem = parse_leef(body)
        head = _leef_head(fields, ext) if fields else {"format": "leef"}
    else:
        head, ext, problem = _plain(env, body)
    error = error or problem
    if error:
        head["parse_error"] = error
    if "module" not in head:
        head["module"] = classify(head.get("product"), head.get("signature_id"))
    return _merge(head, ext, env, receipt)


def _leef_head(fields: list[str], attrs: dict[str, str]) -> Event:
    for leef_key, cef_key in _LEEF_KEYS:
        if leef_key in attrs:
            attrs[cef_key] = attrs.pop(leef_key)
    version, vendor, product, pver, event_id = fields
    head: Event = {
        "format": "leef",
        "vendor": vendor,
        "product": product,
        "product_version": pver,
        "signature_id": _int(event_id),
    }
    name = attrs.pop("name", None)
    if name is not None:
        head["name"] = name
    severity = _severity(attrs.pop("severity", ""))
    if severity is not None:
        head["severity"] = severity
    head["leef_version"] = version
    return head


def _plain(env: dict, body: str) -> tuple[Event, dict, str | None]:
    """Not CEF or LEEF: a plain syslog message (its text in ``msg``) or unknown text."""
    if env:
        return {"format": "syslog"}, {"msg": body}, None
    return {"format": "unknown"}, {}, "not syslog, CEF or LEEF"


def _failed(text: str, receipt: Receipt, exc: Exception) -> Event:
    """Last resort when a parser bug raises: still an event, never an exception."""
    head: Event = {"format": "unknown", "parse_error": f"parser failure: {type(exc).__name__}"}
    head["module"] = "unknown"
    return _assemble(head, (), {}, receipt)


def parse_message(text: str, input: str = "", peer: str = "", received_at: str = "") -> Event:
    """One message (str) → event. Never raises."""
    if not text.isascii():
        text = _valid_unicode(text)
    receipt = (received_at, peer, input, text)
    now = time.time()
    try:
        return _fast(text, receipt, now, rfc3164_cache(now)) or _slow(text, receipt, now)
    except Exception as exc:
        return _failed(text, receipt, exc)


def _valid_unicode(text: str) -> str:
    """Replace lone surrogates (from surrogateescape decoding) so orjson can write the text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text
