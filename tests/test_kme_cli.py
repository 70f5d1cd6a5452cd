"""``sdls-qkd kme certs`` and ``sdls-qkd kme serve`` as real subprocesses, used by a real client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from sdls_qkd.errors import KmeConnectionError
from sdls_qkd.keys.certs import LocalPki
from sdls_qkd.keys.etsi014 import Etsi014Client

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdls_qkd.cli", "kme", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    done = subprocess.run(_cli("certs", str(directory)), env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "SAE_C" in done.stdout
    return directory


def test_certs_have_the_documented_profile(certs: Path) -> None:
    pki = LocalPki.load(certs)
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    kme = x509.load_pem_x509_certificate(pki.kme("KME_A").cert_file.read_bytes())
    public = kme.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    san = kme.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    eku = kme.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = kme.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    sae = x509.load_pem_x509_certificate(pki.sae("SAE_B").cert_file.read_bytes())
    eku = sae.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert oct(pki.sae("SAE_B").key_file.stat().st_mode & 0o777) == "0o600"


def test_certs_refuse_to_overwrite(certs: Path) -> None:
    done = subprocess.run(_cli("certs", str(certs)), env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "already holds a PKI" in done.stderr and "Traceback" not in done.stderr


def test_serve_delivers_keys_and_stops_cleanly(certs: Path) -> None:
    proc, urls = _start_serve(certs)
    try:
        pki = LocalPki.load(certs)
        a, b = pki.sae("SAE_A"), pki.sae("SAE_B")
        with Etsi014Client(urls["KME_A"], ca_file=pki.ca_file, cert_file=a.cert_file,
                           key_file=a.key_file, expected_kme_id="KME_A") as master, \
                Etsi014Client(urls["KME_B"], ca_file=pki.ca_file, cert_file=b.cert_file,
                              key_file=b.key_file, expected_kme_id="KME_B") as slave:
            sent = master.enc_keys("SAE_B", 2, 256)
            got = slave.dec_keys("SAE_A", sent.key_ids)
            assert [k.key for k in got.keys] == [k.key for k in sent.keys]
            assert master.status("SAE_B").target_KME_ID == "KME_B"
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
            assert proc.returncode == 0, err
            assert "stopped" in out and "Traceback" not in err
            with pytest.raises(KmeConnectionError):
                master.status("SAE_B")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start_serve(certs: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        _cli("serve", "--certs", str(certs), "--port-a", "0", "--port-b", "0"),
        env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(urls) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(f"kme serve exited early: {proc.communicate()[1]}")
        kme_id, url, *_ = line.split()
        urls[kme_id] = url
    return proc, urls


def test_conformance_suite_runs_against_a_kme_given_by_url(certs: Path) -> None:
    # the suite as a user runs it against a foreign KME pair: URLs and credentials only
    proc, urls = _start_serve(certs)
    pki = LocalPki.load(certs)
    try:
        options = {
            "--master-url": urls["KME_A"], "--slave-url": urls["KME_B"],
            "--ca-file": str(pki.ca_file),
            "--master-sae": "SAE_A", "--master-cert": str(pki.sae("SAE_A").cert_file),
            "--master-key": str(pki.sae("SAE_A").key_file),
            "--slave-sae": "SAE_B", "--slave-cert": str(pki.sae("SAE_B").cert_file),
            "--slave-key": str(pki.sae("SAE_B").key_file),
            "--other-sae": "SAE_C", "--other-cert": str(pki.sae("SAE_C").cert_file),
            "--other-key": str(pki.sae("SAE_C").key_file),
        }
        args = [a for pair in options.items() for a in pair]
        env = {k: v for k, v in _env().items() if not k.startswith("ETSI014_")}
        done = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "etsi014_conformance.py"), *args,
             "-p", "no:cacheprovider", "-rs"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stdout[-3000:]
        assert " passed" in done.stdout and "failed" not in done.stdout
        # only the check that counts connections inside our simulator is skipped
        assert "1 skipped" in done.stdout
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_serve_with_a_missing_pki_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run(_cli("serve", "--certs", str(tmp_path), "--port-a", "0"),
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pki.json" in done.stderr and "Traceback" not in done.stderr
