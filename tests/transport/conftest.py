"""Shared fixtures for the transport tests."""

from __future__ import annotations

import warnings

# Hypothesis imports libcst to print a patch for a failing example; libcst trips a
# DeprecationWarning (mypy_extensions.TypedDict) that pyproject's "warnings as errors" turns
# into a pytest INTERNALERROR hiding the real failure. Import it once, quietly, up front.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass
