"""The client's TLS context is made once per CA setting, not per client (it loads the CA bundle)."""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi
import pytest

from headwater.client import Client
from headwater.client.http import ssl_context


def test_clients_share_one_verifying_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    first = ssl_context()
    assert first is ssl_context()
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    with Client("http://127.0.0.1:9") as one, Client("https://127.0.0.1:9") as two:
        for client in (one, two):
            pool = client._http._http._transport._pool
            assert pool._ssl_context is first


def test_a_different_ca_setting_gets_its_own_context(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    default = ssl_context()
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes()[:20000].rsplit(b"-----END CERTIFICATE-----", 1)[0]
                       + b"-----END CERTIFICATE-----\n")  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    own = ssl_context()
    assert own is not default and own is ssl_context()
    assert 0 < len(own.get_ca_certs()) < len(default.get_ca_certs())  # the file's CAs, not the default bundle
