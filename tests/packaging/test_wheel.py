"""The wheel installs one import name, ``dsrouter``, and leaves no subpackage or data file out."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("dsrouter-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_only_dsrouter_is_installed(wheel_names):
    tops = {name.split("/")[0] for name in wheel_names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"dsrouter"}


def test_every_source_module_is_in_the_wheel(wheel_names):
    expected = set()
    for folder, prefix in (("router", "dsrouter"), ("plugins", "dsrouter/plugins")):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".lark"} and "__pycache__" not in path.parts:
                expected.add(f"{prefix}/{path.relative_to(ROOT / folder).as_posix()}")
    missing = expected - set(wheel_names)
    assert not missing, f"missing from the wheel (add to [tool.setuptools] packages): {missing}"


def test_console_script_is_declared(wheel_names):
    assert any(n.endswith(".dist-info/entry_points.txt") for n in wheel_names)
