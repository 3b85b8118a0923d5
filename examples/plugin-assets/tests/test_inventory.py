"""asset_owner() and asset_criticality(): the CSV inventory named by DSROUTER_ASSETS."""

from __future__ import annotations

import logging
import os

import pytest
from dsrouter_assets import dsrouter_register_functions, inventory
from dsrouter_assets.inventory import ENV, INVENTORY, Inventory, parse

from dsrouter.testing import FunctionContract

CSV = """\
host,owner,criticality,location
web-01,alice,high,dc1
DB-02,bob,Critical,dc2
print-07,,low,dc1
10.0.0.5,carol,medium,dc2
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def assets(tmp_path, monkeypatch):
    path = tmp_path / "assets.csv"
    path.write_text(CSV)
    monkeypatch.setenv(ENV, str(path))
    INVENTORY.reset()
    yield path
    INVENTORY.reset()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def inv(assets, clock):
    return Inventory(clock=clock, check_every=5.0)


def _rewrite(path, text: str) -> None:
    """Write new contents with a new modification time (as an edit some seconds later)."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


class TestAssetOwnerContract(FunctionContract):
    name = "asset_owner"
    examples = [
        (("web-01",), "alice"),
        (("WEB-01.corp.example.com",), "alice"),
        (("db-02",), "bob"),
        (("print-07",), None),
        (("nope",), None),
    ]

    @pytest.fixture(autouse=True)
    def _inventory(self, assets):
        yield


class TestAssetCriticalityContract(FunctionContract):
    name = "asset_criticality"
    examples = [(("web-01",), "high"), (("db-02",), "critical"), (("10.0.0.5",), "medium")]

    @pytest.fixture(autouse=True)
    def _inventory(self, assets):
        yield


def test_lookups_match_hosts_case_insensitively_and_short_names(inv):
    assert inv.lookup("web-01", "owner") == "alice"
    assert inv.lookup("Web-01.", "owner") == "alice"
    assert inv.lookup("db-02.corp.example.com", "owner") == "bob"
    assert inv.lookup("db-02", "criticality") == "critical"  # lower-cased
    assert inv.lookup("db-02", "location") == "dc2"


def test_unknown_hosts_empty_cells_and_missing_columns_are_null(inv):
    assert inv.lookup("nope", "owner") is None
    assert inv.lookup("", "owner") is None
    assert inv.lookup("print-07", "owner") is None  # an empty cell
    assert inv.lookup("web-01", "no_such_column") is None


def test_an_ip_address_is_never_cut_to_its_first_label(inv):
    assert inv.lookup("10.0.0.5", "owner") == "carol"
    assert inv.lookup("10.0.0.6", "owner") is None
    assert inv.lookup("10", "owner") is None


def test_the_file_is_read_lazily_and_stat_at_most_every_few_seconds(inv, clock, assets):
    assert inv.stats == {"loads": 0, "stats": 0}
    for _ in range(1000):
        assert inv.lookup("web-01", "owner") == "alice"
    assert inv.stats == {"loads": 1, "stats": 1}
    _rewrite(assets, CSV.replace("alice", "alicia"))
    assert inv.lookup("web-01", "owner") == "alice"  # not looked at yet
    clock.now += 5.0
    assert inv.lookup("web-01", "owner") == "alicia"
    assert inv.stats == {"loads": 2, "stats": 2}
    clock.now += 5.0
    assert inv.lookup("web-01", "owner") == "alicia"
    assert inv.stats == {"loads": 2, "stats": 3}  # same mtime and size: not read again


def test_a_file_over_the_limit_is_refused_with_one_log_line_and_the_old_one_kept(
    assets, clock, caplog
):
    inv = Inventory(clock=clock, max_bytes=len(CSV) + 10)
    assert inv.lookup("web-01", "owner") == "alice"
    _rewrite(assets, CSV + "x" * 100 + "\n")
    clock.now += 5
    with caplog.at_level(logging.INFO, logger="dsrouter_assets"):
        assert inv.lookup("web-01", "owner") == "alice"
        clock.now += 5
        inv.lookup("web-01", "owner")
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"over the {len(CSV) + 10}-byte limit" in record.getMessage()
    assert "keeping the 4 host(s) loaded before" in record.getMessage()


def test_a_file_without_a_host_column_is_refused(assets, clock, caplog):
    assets.write_text("name,owner\nweb-01,alice\n")
    with caplog.at_level(logging.ERROR, logger="dsrouter_assets"):
        assert Inventory(clock=clock).lookup("web-01", "owner") is None
    assert "no 'host' column" in caplog.text


def test_a_missing_file_keeps_what_was_loaded(assets, clock, caplog):
    inv = Inventory(clock=clock)
    assert inv.lookup("web-01", "owner") == "alice"
    assets.unlink()
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="dsrouter_assets"):
        assert inv.lookup("web-01", "owner") == "alice"
        clock.now += 5
        inv.lookup("web-01", "owner")
    assert caplog.text.count("cannot read") == 1
    assets.write_text(CSV.replace("alice", "ann"))
    clock.now += 5
    assert inv.lookup("web-01", "owner") == "ann"


def test_without_the_variable_every_lookup_is_null_with_one_warning(monkeypatch, clock, caplog):
    monkeypatch.delenv(ENV, raising=False)
    inv = Inventory(clock=clock)
    with caplog.at_level(logging.WARNING, logger="dsrouter_assets"):
        for _ in range(3):
            assert inv.lookup("web-01", "owner") is None
            clock.now += 5
    assert caplog.text.count(f"{ENV} is not set") == 1


def test_the_path_comes_only_from_the_variable_never_from_the_event(inv, assets, monkeypatch):
    opened: list[str] = []
    real_stat = os.stat
    monkeypatch.setattr(inventory.os, "stat", lambda p: opened.append(str(p)) or real_stat(p))
    for host in ("/etc/passwd", "../../etc/shadow", "file:///etc/hosts"):
        assert inv.lookup(host, "owner") is None
    assert opened == [str(assets)]


def test_parse_takes_a_bom_odd_header_case_and_keeps_the_first_duplicate():
    data = "\ufeffHost , OWNER,Criticality\nweb-01,alice,HIGH\nWEB-01,mallory,low\n,x,y\n"
    rows, duplicates = parse(data.encode())
    assert rows == {"web-01": {"host": "web-01", "owner": "alice", "criticality": "high"}}
    assert duplicates == 1


def test_parse_refuses_what_is_not_utf8():
    with pytest.raises(ValueError, match="not UTF-8"):
        parse(b"host,owner\nweb-01,\xff\xfe\n")


def test_short_rows_and_extra_cells_are_fine():
    rows, _ = parse(b"host,owner,criticality\nweb-01\nweb-02,bob,high,extra,cells\n")
    assert rows["web-01"] == {"host": "web-01"}
    assert rows["web-02"]["criticality"] == "high"


def test_the_functions_are_registered_as_string_to_string_and_not_pure():
    found: list = []
    dsrouter_register_functions(register=found.append)
    assert [(f.name, f.params, f.returns, f.pure) for f in found] == [
        ("asset_owner", ("string",), "string", False),
        ("asset_criticality", ("string",), "string", False),
    ]
