"""Target of the ETSI GS QKD 014 conformance suite: our simulator, or any KME pair.

By default ``tests/test_etsi014_conformance.py`` starts our KME pair in-process on loopback.
To run the same suite against another KME pair, give the URLs and credentials in the
environment (or use this file as a script, which sets them and runs pytest)::

    ETSI014_MASTER_URL=https://kme-a:443  ETSI014_SLAVE_URL=https://kme-b:443
    ETSI014_CA=ca.pem
    ETSI014_MASTER_SAE=SAE_A  ETSI014_MASTER_CERT=a.pem  ETSI014_MASTER_KEY=a.key
    ETSI014_SLAVE_SAE=SAE_B   ETSI014_SLAVE_CERT=b.pem   ETSI014_SLAVE_KEY=b.key
    # optional: a third SAE served by the slave's KME (401 and multicast checks)
    ETSI014_OTHER_SAE=SAE_C   ETSI014_OTHER_CERT=c.pem   ETSI014_OTHER_KEY=c.key
    # optional: the names the KME certificates carry, if not the URL hosts
    ETSI014_MASTER_HOSTNAME=...  ETSI014_SLAVE_HOSTNAME=...

    python tests/etsi014_conformance.py --master-url ... (same names as options, see --help)

Checks whose answer the standard leaves to the KME (e.g. a size that is not a multiple of 8)
accept every conforming answer from a foreign KME and our documented choice from ours.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sdls_qkd.keys.certs import create_local_pki
from sdls_qkd.keys.etsi014 import Etsi014Client, RetryPolicy
from sdls_qkd.keys.kme import KmePair

ENV_FIELDS = {
    "master_url": "ETSI014_MASTER_URL",
    "slave_url": "ETSI014_SLAVE_URL",
    "ca_file": "ETSI014_CA",
    "master_sae": "ETSI014_MASTER_SAE",
    "master_cert": "ETSI014_MASTER_CERT",
    "master_key": "ETSI014_MASTER_KEY",
    "slave_sae": "ETSI014_SLAVE_SAE",
    "slave_cert": "ETSI014_SLAVE_CERT",
    "slave_key": "ETSI014_SLAVE_KEY",
}
OPTIONAL_ENV_FIELDS = {
    "other_sae": "ETSI014_OTHER_SAE",
    "other_cert": "ETSI014_OTHER_CERT",
    "other_key": "ETSI014_OTHER_KEY",
    "master_hostname": "ETSI014_MASTER_HOSTNAME",
    "slave_hostname": "ETSI014_SLAVE_HOSTNAME",
}


@dataclass(frozen=True)
class Target:
    """A master KME and a slave KME that share keys, and the SAE credentials to call them."""

    master_url: str
    slave_url: str
    ca_file: str
    master_sae: str
    master_cert: str
    master_key: str
    slave_sae: str
    slave_cert: str
    slave_key: str
    other_sae: str | None = None
    other_cert: str | None = None
    other_key: str | None = None
    master_hostname: str | None = None
    slave_hostname: str | None = None
    #: True for our simulator: checks also hold it to our documented choices
    local: bool = False
    pair: KmePair | None = None

    def _client(self, url: str, host: str | None, cert: str, key: str) -> Etsi014Client:
        return Etsi014Client(
            url, ca_file=self.ca_file, cert_file=cert, key_file=key, server_hostname=host,
            connect_timeout=5.0, read_timeout=10.0, retry=RetryPolicy(max_retries=0),
        )

    def master(self) -> Etsi014Client:
        """The master SAE's client of the master KME."""
        return self._client(self.master_url, self.master_hostname, self.master_cert,
                            self.master_key)

    def slave(self) -> Etsi014Client:
        """The slave SAE's client of the slave KME."""
        return self._client(self.slave_url, self.slave_hostname, self.slave_cert, self.slave_key)

    def slave_at_master_kme(self) -> Etsi014Client:
        """The slave SAE calling the master's KME (which does not serve it)."""
        return self._client(self.master_url, self.master_hostname, self.slave_cert,
                            self.slave_key)

    def other(self) -> Etsi014Client | None:
        """A third SAE at the slave KME, not the addressed slave (None if not configured)."""
        if not (self.other_sae and self.other_cert and self.other_key):
            return None
        return self._client(self.slave_url, self.slave_hostname, self.other_cert, self.other_key)


def target_from_env() -> Target | None:
    """The foreign target described by ``ETSI014_*`` variables, or None if none is set."""
    values = {name: os.environ.get(var) for name, var in ENV_FIELDS.items()}
    if not any(values.values()):
        return None
    missing = [ENV_FIELDS[n] for n, v in values.items() if not v]
    if missing:
        raise RuntimeError(f"ETSI 014 conformance target incomplete: set {', '.join(missing)}")
    extra = {n: os.environ.get(v) for n, v in OPTIONAL_ENV_FIELDS.items()}
    return Target(**values, **extra)  # type: ignore[arg-type]


@contextmanager
def local_target(directory: Path, **limits: object) -> Iterator[Target]:
    """Our KME pair on loopback ephemeral ports with a fresh test PKI in ``directory``."""
    pki = create_local_pki(directory)
    with KmePair.start(pki, **limits) as pair:  # type: ignore[arg-type]
        yield Target(
            master_url=pair.a.url,
            slave_url=pair.b.url,
            ca_file=str(pki.ca_file),
            master_sae="SAE_A",
            master_cert=str(pki.sae("SAE_A").cert_file),
            master_key=str(pki.sae("SAE_A").key_file),
            slave_sae="SAE_B",
            slave_cert=str(pki.sae("SAE_B").cert_file),
            slave_key=str(pki.sae("SAE_B").key_file),
            other_sae="SAE_C",
            other_cert=str(pki.sae("SAE_C").cert_file),
            other_key=str(pki.sae("SAE_C").key_file),
            local=True,
            pair=pair,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the conformance suite against the KME pair given as options."""
    parser = argparse.ArgumentParser(description="ETSI GS QKD 014 conformance suite")
    for name, var in {**ENV_FIELDS, **OPTIONAL_ENV_FIELDS}.items():
        parser.add_argument("--" + name.replace("_", "-"), help=f"sets {var}")
    args, pytest_args = parser.parse_known_args(argv)
    for name, var in {**ENV_FIELDS, **OPTIONAL_ENV_FIELDS}.items():
        value = getattr(args, name)
        if value is not None:
            os.environ[var] = value
    import pytest

    here = Path(__file__).resolve().parent
    return int(pytest.main([str(here / "test_etsi014_conformance.py"), *pytest_args]))


if __name__ == "__main__":
    sys.exit(main())
