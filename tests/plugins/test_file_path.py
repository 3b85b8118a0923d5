"""Path templates against hostile values: option-looking names, Windows devices, the daemon's
own directories, names that mimic rotated files, and a cache that attacker sizes cannot grow."""

from __future__ import annotations

import os
import subprocess
import tarfile
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsrouter.api import OutputContext
from dsrouter.plugins.file import FileOutput
from dsrouter.plugins.file_path import CACHE_MAX, MAX_PART, PathTemplate, sanitize

DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{n}" for d in ("COM", "LPT") for n in range(10)}


def _components(path, root):
    return os.path.relpath(path, root).split(os.sep)


def _harmless(name):
    return (
        name[:1] not in ("-", ".")
        and name.split(".", 1)[0].upper() not in DEVICES
        and not name.endswith(".")
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
    )


@pytest.fixture
def make(tmp_path):
    outputs = []

    def make(path, **opts):
        options = {"path": path, **opts}
        out = FileOutput("archive", options, OutputContext(tmp_path / "data", tmp_path))
        out.open()
        outputs.append(out)
        return out

    make.data = tmp_path / "data"
    yield make
    for out in outputs:
        out.close()


def test_tar_star_in_the_archive_cannot_be_given_options(make, tmp_path):
    """The probe of issue 8: ``dvchost=--remove-files``, then ``tar czf ../b.tgz *``."""
    out = make("archive/{host}/{date}.jsonl")
    hosts = ["--remove-files", "web-01", "-rf", "--checkpoint=1", "db-02"]
    day = "2026-12-02T07:00:00+00:00"
    out.send([{"host": h, "received_at": day, "n": i} for i, h in enumerate(hosts)])
    out.close()
    archive = make.data / "archive"
    before = sorted(p.relative_to(archive) for p in archive.rglob("*.jsonl"))
    assert len(before) == len(hosts)
    assert all(not p.parts[0].startswith("-") for p in before)
    res = subprocess.run(
        "tar czf ../b.tgz *", shell=True, cwd=archive, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.relative_to(archive) for p in archive.rglob("*.jsonl")) == before
    with tarfile.open(make.data / "b.tgz") as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == [str(p) for p in before]


@pytest.mark.parametrize(
    "value",
    ["CON", "con", "Nul.txt", "com1", "COM0", "LPT9.tar.gz", "aux.", "PRN", "lpt1.", "nul.jsonl"],
)
def test_windows_device_names_never_name_a_file_or_directory(make, value):
    out = make("archive/{host}/{module}.jsonl")
    out.send([{"host": value, "module": value}])
    out.close()
    (made,) = [p for p in (make.data / "archive").rglob("*") if p.is_file()]
    for name in _components(made, make.data / "archive"):
        assert _harmless(name), name


def test_device_names_made_of_two_placeholders_are_caught_too(make):
    out = make("archive/{a}{b}.jsonl")
    out.send([{"a": "CO", "b": "N"}, {"a": "-", "b": "x"}])
    out.close()
    names = sorted(p.name for p in (make.data / "archive").iterdir())
    assert names == ["_CON.jsonl", "_x.jsonl"]


_VALUES = st.one_of(st.none(), st.integers(), st.text(max_size=300))


@settings(max_examples=300, deadline=None)
@given(st.lists(_VALUES, min_size=3, max_size=3))
def test_every_rendered_component_is_harmless(values):
    base = os.path.abspath(os.sep + "base")
    template = PathTemplate("archive/{a}/{b}-{c}/{a}{b}{c}.jsonl", base)
    path = template.render(dict(zip("abc", values, strict=True)))
    root = os.path.join(base, "archive")
    names = _components(path, root)
    assert len(names) == 3 and os.path.commonpath([root, path]) == root
    assert all(_harmless(n) for n in names), names
    assert template.classify(names[-1]) == (names[-1], None, "")


def test_sanitize_keeps_one_harmless_piece():
    assert sanitize("../../etc") == "_._.._etc"
    assert sanitize("--remove-files") == "_-remove-files"
    assert len(sanitize("a" * 500)) == MAX_PART and sanitize("a" * 500).startswith("a" * 80)
    assert sanitize(None) == sanitize("") == "unknown"


@pytest.mark.parametrize("name", ["queues", "deadletter", "DeadLetter", "dsrouter.lock"])
def test_a_templated_first_directory_never_takes_the_daemons_own_names(make, name):
    out = make("{host}/archive.jsonl")
    out.send([{"host": name, "n": 1}])
    out.close()
    assert not (make.data / name).exists()
    assert (make.data / f"_{name}" / "archive.jsonl").exists()


@pytest.mark.parametrize(
    ("template", "value", "written"),
    [
        ("{host}.jsonl", "web.2026-12-02", "web.2026-12-02_.jsonl"),
        ("{host}.jsonl", "web.2026-12-02T07-15-03.123", "web.2026-12-02T07-15-03.123_.jsonl"),
        ("{host}", "x.gz", "x.gz_"),
        ("{host}", "x.gz.tmp", "x.gz.tmp_"),
        ("{host}", "x.2026-12-02", "x.2026-12-02_"),
    ],
)
def test_a_value_cannot_make_a_file_look_rotated_or_compressed(make, template, value, written):
    out = make(f"archive/{template}")
    out.send([{"host": value}])
    out.close()
    assert [p.name for p in (make.data / "archive").iterdir()] == [written]
    assert out.template.classify(written) == (written, None, "")


def test_the_cache_never_keeps_long_values_nor_more_than_its_bound(tmp_path):
    template = PathTemplate("archive/{host}/{msg}.jsonl", tmp_path)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for i in range(2000):  # 2,000 distinct 100 KB values: 200 MB if they were kept
            template.render({"host": f"{i}" + "h" * 100_000, "msg": "m"})
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept - base < 2_000_000
    assert not template._cache
    for i in range(3 * CACHE_MAX):
        template.render({"host": f"h{i}", "msg": "m" * MAX_PART})
    assert 0 < len(template._cache) <= CACHE_MAX
    lengths = [len(v) for key in template._cache for v in key if isinstance(v, str)]
    assert max(lengths) <= MAX_PART


def test_unhashable_and_huge_int_values_render_without_being_cached(tmp_path):
    template = PathTemplate("archive/{host}.jsonl", tmp_path)
    assert template.render({"host": ["a", "b"]}).endswith("_a_b_.jsonl")
    assert template.render({"host": 10**200}).endswith(".jsonl")
    assert not template._cache


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("archive/{module}/../../../x.jsonl", "'..' may not come after a placeholder"),
        ("archive/{host}/", "must end with a file name"),
        ("archive/{host}.jsonl.gz", "may not end in .gz or .tmp"),
        ("archive/-{host}.jsonl", "may not start with '-'"),
        ("archive/{ho st}.jsonl", "braces must enclose a field name"),
    ],
)
def test_bad_templates_are_refused(tmp_path, template, message):
    with pytest.raises(ValueError, match=message):
        PathTemplate(template, tmp_path)


def test_the_fixed_prefix_is_the_root_and_a_dotdot_before_it_is_allowed(tmp_path):
    t = PathTemplate("../shared/archive/{host}/x.jsonl", tmp_path / "data")
    assert t.root == str(tmp_path / "shared" / "archive")
    assert t.render({"host": "a"}) == str(tmp_path / "shared" / "archive" / "a" / "x.jsonl")
    assert PathTemplate("archive/all.jsonl", tmp_path).root == str(tmp_path / "archive")


def test_long_values_keep_a_digest_so_they_do_not_collide():
    from dsrouter.plugins.file_path import MAX_PART, sanitize

    a, b = "x" * 5000 + "a", "x" * 5000 + "b"
    assert sanitize(a) != sanitize(b)
    assert len(sanitize(a)) == MAX_PART
    assert sanitize("x" * MAX_PART) == "x" * MAX_PART


def test_distinct_path_values_are_capped_into_overflow(tmp_path):
    from dsrouter.plugins.file_path import PathTemplate

    t = PathTemplate("archive/{module}/{host}/{date}.jsonl", tmp_path, max_paths=3)
    day = "2026-12-02T07:00:00+00:00"
    paths = [
        t.render({"module": "firewall", "host": f"h{i}", "received_at": day}) for i in range(6)
    ]
    assert len(set(paths[:3])) == 3
    assert set(paths[3:]) == {str(tmp_path / "archive/_overflow/_overflow/2026-12-02.jsonl")}
    assert t.overflowed == 3
    again = t.render({"module": "firewall", "host": "h1", "received_at": "2026-12-03T00:00:00"})
    assert again.endswith("firewall/h1/2026-12-03.jsonl")  # a new day is not a new value
    t.render({"module": "firewall", "host": "h9", "received_at": day})
    assert t.overflowed == 4  # counted per event, cached or not
