"""Real ``dsrouter run --role ...`` processes on a JetStream cluster, and what feeds them.

* :func:`render` — the one configuration every process of a fleet runs: a TCP input, an SNS
  HTTPS input, two file outputs (``archive`` takes everything, ``firewall`` the SNS firewall
  events too), the cluster settings; only ``data_dir`` differs per process (the outputs'
  files are relative to it, the inputs and metrics listen on port 0, read from the banner).
* :class:`Dsrouter` — one process in a directory of its own: its banner, logs, output lines,
  ``queue status``; :meth:`~Dsrouter.kill9` is a crash, :meth:`~Dsrouter.stop` SIGTERM.
* :class:`Fleet` — the processes of one test, killed (SIGKILL) at teardown whatever happened.
* :class:`Streamer` — one TCP connection streaming numbered CEF events, each with a marker
  (``msg=<tag>.<n>``) in order; :class:`SnsPoster` — signed SNS notifications, one thread,
  recording the markers of every notification answered 200 (committed to every output).
* :func:`tally` — the union of some processes' output lines: markers, event ids, duplicates.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import trustme

from ..sns.conftest import FIREWALL, TOPIC, CertHost, Messages, Signer

BANNER = re.compile(r"^\s+input\s+(\S+)\s+(\S+)\s+(\S+):(\d+)(?:\s.*)?$")
METRICS = re.compile(r"^\s+metrics\s+http://([^/]+)/metrics")
#: The outputs' ``batch``; the file output sends one batch at a time (``concurrency`` 1).
BATCH = 50
CONCURRENCY = 1
ACK_WAIT = 3  # seconds: a killed worker's leases come back this long after its last renewal

CONFIG = """\
settings {{
  data_dir = "{data_dir}"
  workers = 0
  metrics = "127.0.0.1:0"
  shutdown_timeout = 10s
  cluster_servers = [{servers}]
  cluster_stream = "{stream}"
  cluster_replicas = 3
  cluster_ack_wait = {ack_wait}s
}}
input tcp_in {{ type = "tcp", listen = "127.0.0.1:0" }}
{sns}
output archive {{ type = "file", path = "archive.jsonl", batch = {batch} }}
output firewall {{ type = "file", path = "firewall.jsonl", batch = {batch} }}
route firewall {{
  when module == "firewall"
  to firewall
  continue
}}
route everything {{
  to archive
}}
"""

SNS_INPUT = """\
input sns_in {{
  type = "sns", listen = "127.0.0.1:0", cert = "{cert}", key = "{key}"
  topics = ["{topic}"], cert_hosts = ["{host}"], cert_ca = "{ca}"
}}"""

LINE = (
    "<134>Nov 27 23:18:32 dsm01 CEF:0|Trend Micro|Deep Security Agent|20.0.1.690|1000552|"
    "Generic Cross Site Scripting(XSS) Prevention|8|cn1=12 cn1Label=Host ID dvchost=web-01 "
    "src=203.0.113.9 act=Reset msg={marker}"
)


def render(
    data_dir: Path,
    servers: Iterable[str],
    stream: str,
    sns: SnsFeed | None = None,
    batch: int = BATCH,
    ack_wait: float = ACK_WAIT,
) -> str:
    """The fleet's configuration for the process whose ``data_dir`` this is."""
    return CONFIG.format(
        data_dir=data_dir,
        servers=", ".join(f'"{u}"' for u in servers),
        stream=stream,
        sns=sns.input_block() if sns else "",
        batch=batch,
        ack_wait=ack_wait,
    )


def wait_until(predicate, timeout: float, what: str, every: float = 0.1):
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def read_lines(path: Path) -> list[dict]:
    """The complete JSON lines of a file (a line still being written is read next time)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return [orjson.loads(x) for x in data.split(b"\n")[:-1] if x]


def marker(event: dict) -> str:
    """The test's mark of an event: ``TestMarker`` (SNS) or ``msg`` (TCP)."""
    return str(event.get("TestMarker") or event.get("msg") or "")


class Dsrouter:
    """``python -m dsrouter --log-json run -c DIR/dsrouter.conf [--role ROLE]`` in ``DIR``."""

    def __init__(self, name: str, root: Path, role: str | None, config: str) -> None:
        self.name, self.role = name, role
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.conf = self.dir / "dsrouter.conf"
        self.conf.write_text(config)
        self.stdout_path, self.log_path = self.dir / "stdout.txt", self.dir / "dsrouter.log"
        self.ports: dict[str, int] = {}
        self.metrics: str | None = None
        argv = [sys.executable, "-m", "dsrouter", "--log-json", "run", "-c", str(self.conf)]
        if role is not None:
            argv += ["--role", role]
        with self.stdout_path.open("wb") as out, self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.dir,
                stdout=out,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

    def __repr__(self) -> str:
        return f"<dsrouter {self.name} role={self.role} pid={self.proc.pid}>"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> Dsrouter:
        """Until the banner's last line; its listening ports and metrics address are kept."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.stdout_path.read_text(errors="replace")
            if "\nStop with" in text or text.startswith("Stop with"):
                for line in text.splitlines():
                    if m := BANNER.match(line):
                        self.ports[m.group(1)] = int(m.group(4))
                    if m := METRICS.match(line):
                        self.metrics = m.group(1)
                return self
            if not self.alive:
                raise AssertionError(f"{self} exited ({self.proc.returncode}): {self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"{self}: no start-up banner in {timeout}s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        out = self.stdout_path.read_text(errors="replace")[-chars:]
        return f"stdout: {out}\nlog: {self.log_path.read_text(errors='replace')[-chars:]}"

    def logs(self) -> list[dict]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                out.append(orjson.loads(line))
        return out

    def summary(self) -> str:
        """What its log says about the events it took in and kept (for failure messages)."""
        logs = self.logs()
        stopped = next((e for e in logs if e.get("event") == "daemon_stopped"), None)
        spooled = sum(e.get("events", 0) for e in logs if e.get("event") == "events_spooled")
        holds = [e.get("reason") for e in logs if e.get("event") == "output_backpressure"]
        state = "running" if self.alive else f"exit {self.proc.returncode}"
        text = f"{self.name} ({self.role}, {state}):"
        if stopped is not None:
            for name, inp in (stopped.get("inputs") or {}).items():
                text += (
                    f" {name} read {inp.get('messages_total')} messages,"
                    f" {inp.get('connections_active')} connections still open at the end;"
                )
            text += f" queued at stop {stopped.get('queued')};"
        return text + f" spooled {spooled}; holds {holds}"

    def lines(self, output: str = "archive") -> list[dict]:
        return read_lines(self.data / f"{output}.jsonl")

    def queue_status(self) -> dict:
        """``dsrouter queue status --json`` of this (running) process."""
        res = subprocess.run(
            [sys.executable, "-m", "dsrouter", "queue", "status", "-c", str(self.conf), "--json"],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
        return json.loads(res.stdout)

    def kill9(self) -> None:
        """SIGKILL: a crash (no drain, no nak of its leases)."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM (drain) and wait; the exit code."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self} did not stop within {timeout}s: {self.tail()}") from None


class Fleet:
    """The dsrouter processes of one test on one stream; :meth:`close` kills what is left."""

    def __init__(
        self, root: Path, servers: list[str], stream: str, sns: SnsFeed | None = None
    ) -> None:
        self.root, self.servers, self.stream, self.sns = root, list(servers), stream, sns
        self.procs: dict[str, Dsrouter] = {}

    def start(self, name: str, role: str | None) -> Dsrouter:
        """Start a process (not waited for: :meth:`Dsrouter.wait_ready`)."""
        data = self.root / name / "data"
        proc = Dsrouter(name, self.root, role, render(data, self.servers, self.stream, self.sns))
        self.procs[name] = proc
        return proc

    def start_all(self, roles: dict[str, str | None]) -> list[Dsrouter]:
        """Start several at once (they boot in parallel) and wait for each one's banner."""
        procs = [self.start(name, role) for name, role in roles.items()]
        return [p.wait_ready() for p in procs]

    def summary(self) -> str:
        return "\n".join(p.summary() for p in self.procs.values())

    def close(self) -> None:
        for p in self.procs.values():
            if p.alive:
                p.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.proc.wait(10)


# ---- senders ---------------------------------------------------------------------------------


class Streamer(threading.Thread):
    """Streams CEF events marked ``<tag>.<n>`` (n = 0, 1, ...) over one TCP connection until
    ``limit`` or :attr:`stop`; ``pace`` seconds between chunks. ``sent`` counts the events
    whose bytes ``sendall`` handed to the kernel."""

    def __init__(
        self, port: int, tag: str, limit: int = 10**7, chunk: int = 20, pace: float = 0.0
    ) -> None:
        super().__init__(daemon=True, name=f"streamer-{tag}")
        self.port, self.tag, self.limit, self.chunk, self.pace = port, tag, limit, chunk, pace
        self.sent = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def markers(self) -> list[str]:
        return [f"{self.tag}.{n}" for n in range(self.sent)]

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                while not self.stop.is_set() and self.sent < self.limit:
                    n = min(self.chunk, self.limit - self.sent)
                    data = "".join(
                        LINE.format(marker=f"{self.tag}.{i}") + "\n"
                        for i in range(self.sent, self.sent + n)
                    )
                    sock.sendall(data.encode())
                    self.sent += n
                    if self.pace:
                        time.sleep(self.pace)
                sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.error = exc


class SnsFeed:
    """What an SNS input needs: a signer whose certificate a local HTTPS cert host serves,
    and the input's own TLS certificate (for 127.0.0.1) with the CA clients trust."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.certs = CertHost(root)
        self.messages = Messages(Signer(), self.certs)
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        self.cert, self.key, self.client_ca = root / "sns.pem", root / "sns.key", root / "ca.pem"
        leaf.cert_chain_pems[0].write_to_path(str(self.cert))
        leaf.private_key_pem.write_to_path(str(self.key))
        ca.cert_pem.write_to_path(str(self.client_ca))

    def input_block(self) -> str:
        return SNS_INPUT.format(
            cert=self.cert, key=self.key, topic=TOPIC, host=self.certs.host, ca=self.certs.ca_file
        )

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.client_ca))

    def close(self) -> None:
        self.certs.close()


@dataclass
class Answers:
    """What one poster saw: markers of notifications answered 200, other statuses, errors."""

    committed: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


class SnsPoster(threading.Thread):
    """Posts signed notifications of ``per_message`` firewall events (marked
    ``<tag>.<i>.<j>``) to ``url`` until :attr:`stop` or the router is gone. A 5xx is retried
    with the same message, as SNS does; only a 200 counts as committed."""

    def __init__(self, feed: SnsFeed, url: str, tag: str, per_message: int = 5) -> None:
        super().__init__(daemon=True, name=f"sns-{tag}")
        self.feed, self.url, self.tag, self.per_message = feed, url, tag, per_message
        self.answers = Answers()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(verify=self.feed.trust(), timeout=30.0) as client:
            i = 0
            while not self.stop.is_set():
                marks = [f"{self.tag}.{i}.{j}" for j in range(self.per_message)]
                message = self.feed.messages.notification(
                    [{**FIREWALL, "TestMarker": m} for m in marks]
                )
                if not self._deliver(client, message, marks):
                    return
                i += 1

    def _deliver(self, client: httpx.Client, message: dict, marks: list[str]) -> bool:
        """Post until a 200 (True) or a 4xx / a dead router / stop (False)."""
        body = json.dumps(message).encode()
        headers = {
            "content-type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
        }
        while not self.stop.is_set():
            try:
                resp = client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.answers.errors.append(repr(exc))
                return False
            self.answers.statuses[resp.status_code] += 1
            if resp.status_code == 200:
                self.answers.committed += marks
                return True
            if resp.status_code < 500:
                self.answers.errors.append(f"{resp.status_code}: {resp.text[:200]}")
                return False
            time.sleep(0.2)
        return False


# ---- what was delivered ----------------------------------------------------------------------


@dataclass
class Tally:
    """The union of some processes' lines of one output."""

    events: list[dict]
    per_proc: dict[str, int]

    @property
    def ids(self) -> Counter:
        return Counter(e["event_id"] for e in self.events)

    @property
    def markers(self) -> Counter:
        return Counter(marker(e) for e in self.events)

    @property
    def duplicates(self) -> int:
        """Deliveries beyond the first of each event (by ``event_id``)."""
        return len(self.events) - len(self.ids)


def tally(procs: Iterable[Dsrouter], output: str = "archive") -> Tally:
    per_proc, events = {}, []
    for p in procs:
        lines = p.lines(output)
        per_proc[p.name] = len(lines)
        events += lines
    return Tally(events, per_proc)


def wait_delivered(
    procs: list[Dsrouter],
    want: set[str],
    timeout: float,
    output: str = "archive",
    fleet: Fleet | None = None,
    drained: Callable[[], bool] | None = None,
) -> Tally:
    """Until every marker of ``want`` is among the procs' lines of ``output``: at most
    ``timeout`` s, or (sooner) once ``drained()`` (nothing left to deliver) has been true
    for twice the ack wait with no new line. The failure message says what every process of
    ``fleet`` logged."""
    deadline = time.monotonic() + timeout
    still_since, count = None, -1
    while True:
        got = tally(procs, output)
        if want <= got.markers.keys():
            return got
        now = time.monotonic()
        if len(got.events) != count or drained is None or not drained():
            still_since, count = now, len(got.events)
        if now > deadline or now - still_since > 2 * ACK_WAIT + 1:
            break
        time.sleep(0.25)
    missing = want - got.markers.keys()
    why = "within {timeout}s" if now > deadline else "and the stream has nothing left for them"
    raise AssertionError(
        f"{len(missing)} of {len(want)} events never reached {output} {why.format(timeout=timeout)}"
        f" (e.g. {sorted(missing)[:5]}); lines per process {got.per_proc}\n"
        + (fleet.summary() if fleet is not None else "")
    )
