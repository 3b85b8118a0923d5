"""The built-in inputs pass the same conformance kit third-party authors run."""

from __future__ import annotations

import socket
import ssl

import pytest
import trustme

from dsrouter.testing import InputContract


class TestUdpInput(InputContract):
    type_name = "udp"

    def options(self):
        return {"listen": "127.0.0.1:0"}

    def deliver(self, address, messages):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for m in messages:
                sock.sendto(m, address[:2])


class TestTcpInput(InputContract):
    type_name = "tcp"

    def options(self):
        return {"listen": "127.0.0.1:0", "framing": "lf"}

    def deliver(self, address, messages):
        with socket.create_connection(address[:2], timeout=5) as sock:
            sock.sendall(b"".join(m + b"\n" for m in messages))


class TestTlsInput(InputContract):
    type_name = "tls"

    @pytest.fixture(autouse=True)
    def certificates(self, tmp_path):
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        self.cert, self.key = tmp_path / "cert.pem", tmp_path / "key.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.cert))
        cert.private_key_pem.write_to_path(str(self.key))
        self.client = ssl.create_default_context()
        ca.configure_trust(self.client)

    def options(self):
        return {"listen": "127.0.0.1:0", "cert": str(self.cert), "key": str(self.key)}

    def deliver(self, address, messages):
        with socket.create_connection(address[:2], timeout=5) as raw:
            with self.client.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                sock.sendall(b"".join(m + b"\n" for m in messages))
