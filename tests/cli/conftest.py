"""Shared fixtures for the CLI tests: config and capture files in a temporary directory."""

from __future__ import annotations

import pytest

IPS = (
    "<134>Nov 27 23:18:32 web-01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
    "Generic Cross Site Scripting(XSS) Prevention|8|cn1=12 cn1Label=Host ID dvchost=web-01 "
    "src=203.0.113.9 act=Reset"
)
FW = (
    "<134>Nov 27 23:18:33 web-01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|21|"
    "Out Of Allowed Policy|5|cn1=12 cn1Label=Host ID dvchost=web-01 dpt=138 act=Deny"
)
AM = (
    "<134>Nov 27 23:18:34 db-02 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|4000000|"
    "Eicar_test_file|6|cn1=7 cn1Label=Host ID dvchost=db-02 filePath=C:\\\\eicar.exe act=Quarantine"
)

ROUTES = """\
output archive { type = "file", path = "a.jsonl" }
output pager   { type = "stdout" }
output spare   { type = "stdout" }

route critical {
  when severity >= 8 and module in ["intrusion_prevention", "anti_malware"]
  to pager
  continue
}
route netbios_noise {
  when module == "firewall" and dpt in [137, 138, 139]
  drop
}
route spare_route {
  when module == "device_control"
  to spare
}
route everything { to archive, pager }
"""


@pytest.fixture
def lines() -> dict[str, str]:
    """Real DS messages: an IPS event (severity 8), a NetBIOS firewall deny, an anti-malware hit."""
    return {"ips": IPS, "fw": FW, "am": AM}


@pytest.fixture
def routes_text() -> str:
    """Three outputs and four routes: critical (continue), netbios_noise (drop), spare, all."""
    return ROUTES


@pytest.fixture
def conf(tmp_path):
    """Write a configuration file and return its path (default: the ROUTES config)."""

    def write(text: str = ROUTES, name: str = "dsrouter.conf") -> str:
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    return write


@pytest.fixture
def capture(tmp_path):
    """Write syslog lines to a capture file and return its path."""

    def write(messages: list[str], name: str = "cap.log") -> str:
        p = tmp_path / name
        p.write_text("".join(m + "\n" for m in messages))
        return str(p)

    return write
