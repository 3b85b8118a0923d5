"""``include`` patterns: the bounded walk finds what :mod:`glob` finds, and no more."""

from __future__ import annotations

import glob
import os

import pytest

from dsrouter.dsl import load_config_text
from dsrouter.dsl.includes import WalkTooLong, find
from dsrouter.errors import ConfigError
from dsrouter.plugin import Plugins

TREE = [
    "a.rules",
    "b.conf",
    ".hidden.rules",
    "sub/c.rules",
    "sub/deep/d.rules",
    "sub/deep/e.txt",
    ".dot/f.rules",
    "other/g.rules",
]


@pytest.fixture
def tree(tmp_path):
    for name in TREE:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("# x\n")
    return tmp_path


@pytest.mark.parametrize(
    "pattern",
    ["*.rules", "**/*.rules", "sub/**/*", "*/*.rules", "s?b/*.rules", "[ab].*", ".*", "a.rules"],
)
def test_the_walk_matches_glob(tree, pattern):
    full = os.path.join(tree, pattern)
    want = sorted(m for m in glob.glob(full, recursive=True) if not os.path.isdir(m))
    assert find(full, 100) == want


def test_double_star_does_not_follow_directory_links(tree):
    os.symlink(tree, tree / "sub" / "loop")
    found = find(os.path.join(tree, "**", "*.rules"), 100)
    assert not any("loop" in p for p in found)
    assert len(found) == 4  # a, sub/c, sub/deep/d, other/g


def test_the_walk_stops_at_its_entry_budget(tree):
    with pytest.raises(WalkTooLong):
        find(os.path.join(tree, "**", "*.none"), 100, max_entries=5)


def test_an_include_of_the_whole_file_system_is_refused_quickly(tmp_path):
    text = 'include "/**/*.no-such-rules"\noutput a { type = "stdout" }\nroute r { to a }\n'
    specs = Plugins(entry_points=False).option_specs()
    with pytest.raises(ConfigError) as info:
        load_config_text(text, base_dir=tmp_path, option_specs=specs)
    (d,) = info.value.diagnostics
    assert d.code == "E215" and "more than 50000 entries" in d.message
