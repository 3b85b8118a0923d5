"""An installed third-party distribution without pip: modules plus a ``.dist-info`` folder.

``importlib.metadata`` (and so pluggy's entry-point loading) finds a distribution by its
``NAME-VERSION.dist-info`` folder on ``sys.path``; putting ``root`` on ``PYTHONPATH`` (for a
daemon subprocess) or ``sys.path`` (in-process, with ``monkeypatch.syspath_prepend``) is then
exactly what ``pip install`` would have done for discovery.
"""

from __future__ import annotations

from pathlib import Path


def make_distribution(
    root: Path,
    name: str,
    modules: dict[str, str],
    entry_points: dict[str, str],
    version: str = "0.1.0",
) -> Path:
    """Write ``modules`` (``{"pkg_mod": source}``) and a dist-info declaring ``entry_points``
    (``{"ep name": "module"}``) in the ``dsrouter`` group under ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[dsrouter]\n{lines}")
    return root
