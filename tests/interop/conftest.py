"""Real rsyslog and syslog-ng receivers for the ``siem`` output, one of each per module.

Each daemon runs with a private config, pid, control and work files in a temporary folder, on
free high ports on 127.0.0.1 (rsyslog binds port 0 and reports the port it got; syslog-ng is
started again on fresh ports if one was taken meanwhile), and writes every message it
receives on an input to two files:
``NAME.raw`` (the message exactly as it arrived, one per line) and ``NAME.jsonl`` (the fields
it parsed: host, app, time, msg). The fixtures ``rsyslogd`` and ``syslog_ng``
(tests/conftest.py) locate the binaries, or skip / fail when they are absent.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from ..conftest import free_port

START_TIMEOUT = 30.0  # generous: CI machines run several suites at once


class Certs:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    def __init__(self, where: Path) -> None:
        self.authority = trustme.CA()
        self.ca = where / "ca.pem"
        self.authority.cert_pem.write_to_path(str(self.ca))
        self.server_cert, self.server_key = self._issue(where, "server", "127.0.0.1", "localhost")
        self.client_cert, self.client_key = self._issue(where, "client", "dsrouter-client")

    def _issue(self, where: Path, name: str, *names: str) -> tuple[Path, Path]:
        leaf = self.authority.issue_cert(*names)
        cert, key = where / f"{name}.pem", where / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key


class StartFailed(AssertionError):
    """A receiver did not come up (a port taken since it was picked, a bad config)."""


class Receiver:
    """A running daemon: its ports by input name, and what it wrote for each input."""

    def __init__(self, name: str, workdir: Path, ports: dict[str, int]) -> None:
        self.name, self.workdir, self.ports = name, workdir, ports
        self.proc: subprocess.Popen | None = None
        self.seen: dict[str, int] = {}  # lines already handed to a test, per input

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start the daemon and wait until every input listens; stop it again if one never does."""
        log = (self.workdir / "daemon.log").open("wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        try:
            for name in self.ports:
                self._wait_listening(name)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise StartFailed(f"{self.name} exited at start:\n{self.log()}")
            if self._listening(name):
                return
            time.sleep(0.05)
        raise StartFailed(f"{self.name} is not listening for {name}:\n{self.log()}")

    def _listening(self, name: str) -> bool:
        if not self.ports[name]:  # port 0: rsyslog writes the one it got to NAME.port
            path = self.workdir / f"{name}.port"
            text = path.read_text().strip() if path.exists() else ""
            if text.isdigit():
                self.ports[name] = int(text)
            return text.isdigit()
        try:
            socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        return (self.workdir / "daemon.log").read_text(errors="replace")

    def take(self, input: str, n: int, timeout: float = 30.0) -> tuple[list[bytes], list[dict]]:
        """The next ``n`` messages of ``input``: raw lines and parsed fields (waits for them)."""
        first = self.seen.get(input, 0)
        deadline = time.monotonic() + timeout
        while True:
            raw = self._lines(f"{input}.raw")
            fields = self._lines(f"{input}.jsonl")
            if len(raw) >= first + n and len(fields) >= first + n:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} wrote {len(raw) - first} of {n} messages on {input}:\n{self.log()}"
                )
            time.sleep(0.05)
        self.seen[input] = first + n
        return raw[first : first + n], [json.loads(x) for x in fields[first : first + n]]

    def nothing_more(self, input: str) -> bool:
        return len(self._lines(f"{input}.raw")) == self.seen.get(input, 0)

    def _lines(self, name: str) -> list[bytes]:
        path = self.workdir / name
        data = path.read_bytes() if path.exists() else b""
        return data.split(b"\n")[:-1]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


# ---- rsyslog --------------------------------------------------------------------------------

RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="256k"
       parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="host" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="time" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
{rulesets}
input(type="imtcp" port="{tcp}" listenPortFileName="{work}/tcp.port" ruleset="tcp")
input(type="imtcp" port="{tls}" listenPortFileName="{work}/tls.port" ruleset="tls"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" port="{mtls}" listenPortFileName="{work}/mtls.port" ruleset="mtls"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
"""
RULESET = (
    'ruleset(name="{name}") {{ action(type="omfile" file="{work}/{name}.raw" template="raw")'
    ' action(type="omfile" file="{work}/{name}.jsonl" template="fields") }}'
)


def start_rsyslog(rsyslogd: str, certs: Certs, work: Path, tcp: int = 0) -> Receiver:
    """rsyslog 8 with imtcp: ``tcp`` (LF or octet-counted; on port ``tcp``, 0 for any free
    one), ``tls`` (ossl, server certificate only) and ``mtls`` (client certificate required);
    the TLS inputs take free ports, which rsyslog reports in ``NAME.port``."""
    ports = {"tcp": tcp, "tls": 0, "mtls": 0}
    rulesets = "\n".join(RULESET.format(name=n, work=work) for n in ports)
    conf = work / "rsyslog.conf"
    conf.write_text(
        RSYSLOG_CONF.format(
            work=work,
            ca=certs.ca,
            cert=certs.server_cert,
            key=certs.server_key,
            rulesets=rulesets,
            **ports,
        )
    )
    receiver = Receiver("rsyslog", work, ports)
    receiver.start([rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslog.pid")])
    return receiver


@pytest.fixture(scope="module")
def rsyslog(rsyslogd, certs, tmp_path_factory):
    receiver = start_rsyslog(rsyslogd, certs, tmp_path_factory.mktemp("rsyslog"))
    yield receiver
    receiver.stop()


# ---- syslog-ng ------------------------------------------------------------------------------

SYSLOG_NG_CONF = """\
@version: 3.38
options {{ keep-hostname(yes); chain-hostnames(no); use-dns(no); stats-freq(0);
          log-msg-size(262144); }};
source s_tcp5424 {{ syslog(transport("tcp") ip("127.0.0.1") port({tcp5424})
                          flags(store-raw-message)); }};
source s_lf5424 {{ network(transport("tcp") ip("127.0.0.1") port({lf5424})
                          flags(syslog-protocol, store-raw-message)); }};
source s_lf3164 {{ network(transport("tcp") ip("127.0.0.1") port({lf3164})
                          flags(store-raw-message)); }};
source s_tls {{ syslog(transport("tls") ip("127.0.0.1") port({tls}) flags(store-raw-message)
                tls(key-file("{key}") cert-file("{cert}") peer-verify(optional-untrusted))); }};
source s_mtls {{ syslog(transport("tls") ip("127.0.0.1") port({mtls}) flags(store-raw-message)
                 tls(key-file("{key}") cert-file("{cert}") ca-file("{ca}")
                     peer-verify(required-trusted))); }};
{logs}
"""
SYSLOG_NG_LOG = """\
destination d_{name}_raw {{ file("{work}/{name}.raw" template("${{RAWMSG}}\\n")); }};
destination d_{name}_fields {{ file("{work}/{name}.jsonl"
  template("$(format-json host=$HOST app=$PROGRAM time=$ISODATE msg=$MESSAGE)\\n")); }};
log {{ source(s_{name}); destination(d_{name}_raw); destination(d_{name}_fields); }};
"""


@pytest.fixture(scope="module")
def syslog_ng_receiver(syslog_ng, certs, tmp_path_factory):
    """syslog-ng 3.38: ``tcp5424`` (syslog(), octet-counted), ``lf5424`` / ``lf3164``
    (network(), LF), ``tls`` and ``mtls`` (syslog() over TLS)."""
    work = tmp_path_factory.mktemp("syslog-ng")
    names = ("tcp5424", "lf5424", "lf3164", "tls", "mtls")
    logs = "".join(SYSLOG_NG_LOG.format(name=n, work=work) for n in names)
    for attempt in range(3):  # syslog-ng cannot pick its own ports: retry if one was taken
        ports = {n: free_port() for n in names}
        conf = work / "syslog-ng.conf"
        conf.write_text(
            SYSLOG_NG_CONF.format(
                ca=certs.ca, cert=certs.server_cert, key=certs.server_key, logs=logs, **ports
            )
        )
        receiver = Receiver("syslog-ng", work, ports)
        try:
            receiver.start(syslog_ng.argv(conf, work), env=syslog_ng.env())
            break
        except StartFailed:
            if attempt == 2:
                raise
    yield receiver
    receiver.stop()
