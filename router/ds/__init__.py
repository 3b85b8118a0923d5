"""Deep Security events: CEF/LEEF parsing, the normalized event, the field catalogue (pure).

The daemon calls :func:`parse_batch` with the raw messages a receiver got together; tools
and tests call :func:`parse_message`. Both return plain dicts described in ``docs/fields.md``
(:mod:`dsrouter.ds.catalog`) and never raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dsrouter.ds.batch import parse_batch
    from dsrouter.ds.normalize import parse_message

__all__ = ["parse_batch", "parse_message"]


def __getattr__(name: str) -> Any:
    # Imported on first use so that ``python -m dsrouter.ds.catalog`` runs the catalogue
    # module without it having been imported already through this package.
    if name == "parse_batch":
        from dsrouter.ds import batch

        return batch.parse_batch
    if name == "parse_message":
        from dsrouter.ds import normalize

        return normalize.parse_message
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
