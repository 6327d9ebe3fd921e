"""A second gateway over TLS in front of the `farm` fixture's database, relay and worker, for clients
that only speak HTTPS (fal_client) or only hand out file objects for https URLs (replicate)."""

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from tests.farm import BIN, START_TIMEOUT_S, Farm, spawn, stop
from tests.services import free_port


@dataclass
class TlsGateway:
    url: str  # https://127.0.0.1:PORT; output URLs start with it too
    ca_file: Path  # PEM of the CA that signed the gateway's certificate
    farm: Farm  # the farm behind it (same keys, jobs and worker)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="session")
def tls_gateway(farm: Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsGateway]:
    """uvicorn with a certificate for 127.0.0.1 from a throwaway CA, sharing the farm's job store."""
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    port = free_port()
    gateway = TlsGateway(url=f"https://127.0.0.1:{port}", ca_file=root / "ca.pem", farm=farm)
    argv = [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--ssl-keyfile", str(root / "server.pem"), "--ssl-certfile", str(root / "server.pem")]
    process = spawn("gateway-tls", argv, {**farm.env, "FARM_PUBLIC_URL": gateway.url}, farm.logs)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"TLS gateway exited:\n{farm.tail_logs()}"
            try:
                if httpx.get(f"{gateway.url}/healthz", verify=gateway.ssl_context(), timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"TLS gateway not healthy:\n{farm.tail_logs()}"
            time.sleep(0.05)
        yield gateway
    finally:
        stop(process)
