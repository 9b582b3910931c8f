"""TLS facts: the `tls` object of https records on both backends (trustme servers on loopback),
the offline verdict with -k against OpenSSL's, and certificate parsing that never raises."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import FetchOne, collect, make_config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher import tls
from fetcher.loopback import LoopbackDNS, LoopbackHosts, replies, response
from fetcher.models import Result

OK = replies(response("200 OK", [("Content-Type", "text/plain")]))
NOW = datetime.datetime.now(datetime.UTC)


def _server(leaf: trustme.LeafCert, *, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    if max_version is not None:
        context.maximum_version = max_version
    return context


def _self_signed(tmp_path: Path, name: str = "localhost") -> ssl.SSLContext:
    """A leaf that signed itself, for `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "self.pem", tmp_path / "self.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def _case(name: str, ca: trustme.CA, tmp_path: Path) -> ssl.SSLContext:
    """The servers of the parity table, by name."""
    if name == "valid":
        return _server(ca.issue_cert("localhost", "127.0.0.1"))
    if name == "expired":
        past = NOW - datetime.timedelta(days=2)
        leaf = ca.issue_cert(
            "localhost", not_before=past - datetime.timedelta(days=30), not_after=past
        )
        return _server(leaf)
    if name == "wrong-name":
        return _server(ca.issue_cert("other.example"))
    if name == "unknown-ca":
        return _server(trustme.CA().issue_cert("localhost"))
    if name == "self-signed":
        return _self_signed(tmp_path)
    if name == "tls12":
        return _server(ca.issue_cert("localhost"), max_version=ssl.TLSVersion.TLSv1_2)
    raise AssertionError(name)


# name -> OpenSSL's reason for failing it (None: it verifies)
CASES = {
    "valid": None,
    "expired": "expired",
    "wrong-name": "hostname-mismatch",
    "unknown-ca": "unknown-issuer",
    "self-signed": "self-signed",
    "tls12": None,
}


def _both(line: str, **options: Any) -> dict[str, Result]:
    """The same target through each backend."""

    return {
        backend: collect([line], make_config(backend=backend, **options))[0]
        for backend in ("raw", "httpx")
    }


@pytest.mark.parametrize("case", list(CASES))
def test_both_backends_report_the_same_tls_facts(
    case: str, hosts: LoopbackHosts, ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    port = hosts.serve(OK, tls=_case(case, ca, tmp_path))
    results = _both(f"https://localhost:{port}/", cafile=ca_file)
    records = {name: result.to_record()["tls"] for name, result in results.items()}
    assert records["raw"] == records["httpx"]
    facts = records["raw"]
    reason = CASES[case]
    assert facts["verified"] is (reason is None)
    assert facts["verify_error"] == reason
    for result in results.values():  # a failed verification stays a tls-error
        assert (result.error.kind if result.error else None) == ("tls-error" if reason else None)
    # ... and still shows what was served
    cert = facts["cert"]
    assert cert is not None and facts["cert_error"] is None
    assert facts["version"] == ("TLSv1.2" if case == "tls12" else "TLSv1.3")
    assert facts["cipher"] and facts["alpn"] == "http/1.1"
    assert len(cert["sha256"]) == 64 and cert["key"] == "EC-P256"
    assert cert["self_signed"] is (case == "self-signed")
    expected_cn = {"self-signed": "localhost"}.get(case)
    assert cert["subject_cn"] == expected_cn
    if case == "expired":
        assert cert["days_left"] < 0
    if case == "wrong-name":
        assert cert["sans"] == ["other.example"]


@pytest.mark.parametrize("case", list(CASES))
def test_the_offline_verdict_with_k_matches_openssl(
    case: str, hosts: LoopbackHosts, ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    """With -k the handshake verifies nothing and the leaf is checked afterwards: the verdict
    is OpenSSL's, but for an issuer the leaf alone cannot vouch for (an intermediate may)."""
    port = hosts.serve(OK, tls=_case(case, ca, tmp_path))
    results = _both(f"https://localhost:{port}/", cafile=ca_file, verify=False)
    records = {name: result.to_record()["tls"] for name, result in results.items()}
    assert records["raw"] == records["httpx"]
    assert all(result.status_code == 200 for result in results.values())
    facts = records["raw"]
    if case == "unknown-ca":
        assert (facts["verified"], facts["verify_error"]) == (None, "issuer-unchecked")
    else:
        assert facts["verify_error"] == CASES[case]
        assert facts["verified"] is (CASES[case] is None)


def test_wildcard_certificate(hosts: LoopbackHosts, ca: trustme.CA, ca_file: str) -> None:
    port = hosts.serve(OK, tls=_server(ca.issue_cert("*.wild.test", key_type=trustme.KeyType.RSA)))
    dns = hosts.serve_dns(
        LoopbackDNS({"a.wild.test": ["127.0.0.1"], "b.a.wild.test": ["127.0.0.1"]})
    )
    resolvers = (f"127.0.0.1:{dns}",)
    for verify in (True, False):
        one = _both(
            f"https://a.wild.test:{port}/", cafile=ca_file, resolvers=resolvers, verify=verify
        )
        facts = {name: result.to_record()["tls"] for name, result in one.items()}
        assert facts["raw"] == facts["httpx"]
        assert facts["raw"]["verified"] is True
        assert facts["raw"]["cert"]["wildcard"] is True
        assert facts["raw"]["cert"]["key"] == "RSA-2048"
        # a wildcard covers one label only
        two = _both(
            f"https://b.a.wild.test:{port}/", cafile=ca_file, resolvers=resolvers, verify=verify
        )
        assert {r.to_record()["tls"]["verify_error"] for r in two.values()} == {"hostname-mismatch"}


def test_http_records_and_no_tls_info_have_none(
    hosts: LoopbackHosts, fetch: FetchOne, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    plain = hosts.serve(OK)
    assert fetch(f"http://127.0.0.1:{plain}/").to_record()["tls"] is None
    port = hosts.serve(OK, tls=server_tls)
    assert fetch(f"https://localhost:{port}/", cafile=ca_file, tls_info=False).tls is None
    # without the facts a failed verification is still a tls-error
    failed = fetch(f"https://localhost:{port}/", tls_info=False)
    assert failed.error is not None and failed.error.kind == "tls-error" and failed.tls is None


def test_scheme_auto_keeps_the_https_attempts_tls_facts(
    hosts: LoopbackHosts, fetch: FetchOne, ca: trustme.CA, tmp_path: Path
) -> None:
    """The https try fails verification; the http fallback (on the same, TLS-only port) fails
    too: the record's error is http's, its tls facts the https attempt's."""
    port = hosts.serve(OK, tls=_case("expired", ca, tmp_path))
    result = fetch(f"localhost:{port}", scheme="auto")
    record = result.to_record()
    https = record["attempts"][0]
    assert https["error"]["kind"] == "tls-error"
    assert https["tls"]["verify_error"] == "unknown-issuer"
    assert https["tls"]["cert"]["days_left"] < 0
    assert record["tls"] == https["tls"]  # the record keeps it whatever http did


def test_a_capture_that_finds_no_server_says_why() -> None:
    info = tls.TLSInfo(None, None, None, None, "localhost", verified=False, verify_error="expired")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    from fetcher.backends.base import capture_into

    asyncio.run(capture_into(info, "127.0.0.1", 1, context, 1.0))
    facts = info.as_dict(NOW.timestamp())
    assert facts["cert"] is None and facts["cert_error"].startswith("certificate not captured")


# --- parsing ------------------------------------------------------------------------------------


def _der(leaf: trustme.LeafCert) -> bytes:
    pem = leaf.cert_chain_pems[0].bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_parse_cert_fields(ca: trustme.CA) -> None:
    der = _der(ca.issue_cert("a.example", "*.b.example", "10.0.0.1", common_name="a.example"))
    cert = tls.parse_cert(der)
    assert isinstance(cert, tls.Cert)
    facts = cert.as_dict(NOW.timestamp())
    assert facts["subject_cn"] == "a.example"
    assert facts["sans"] == ["a.example", "*.b.example", "10.0.0.1"]
    assert facts["issuer_org"] == "trustme v" + trustme.__version__
    assert facts["wildcard"] is True and facts["self_signed"] is False
    assert facts["not_after"].endswith("Z") and facts["days_left"] > 300
    assert int(facts["serial"], 16) > 0


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_fuzzed_certificate_is_a_reason_never_a_crash(data: st.DataObject) -> None:
    base = FUZZ_BASE
    position = data.draw(st.integers(0, len(base) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=8))
    cut = data.draw(st.booleans())
    der = base[:position] + (b"" if cut else junk + base[position + len(junk) :])
    info = tls.TLSInfo("TLSv1.3", "X", None, der, "localhost", offline=True)
    facts = info.as_dict(NOW.timestamp())  # parses and checks offline: neither may raise
    if facts["cert"] is None:
        assert facts["cert_error"].startswith("unreadable certificate")
    assert facts["verified"] in (True, False, None)


FUZZ_BASE = _der(trustme.CA().issue_cert("localhost"))


def test_garbage_der_and_the_cache() -> None:
    cache = tls.CertCache(size=2)
    bad = cache.get(b"\x30\x03\x02\x01\x00")
    assert isinstance(bad, tls.Unreadable) and bad.reason.startswith("unreadable certificate")
    first = cache.get(FUZZ_BASE)
    assert cache.get(FUZZ_BASE) is first and cache.hits == 1
    cache.get(b"other")
    cache.get(b"third")  # the least recently used (bad) goes first, then FUZZ_BASE
    assert len(cache) == 2 and cache.get(FUZZ_BASE) is not first


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("a.example", "A.Example", True),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.com", "example.com", False),
        ("w*.example.com", "www.example.com", False),
        ("*.*.example", "a.b.example", False),
    ],
)
def test_host_names_match_as_openssl_does(pattern: str, host: str, expected: bool) -> None:
    assert tls._dns_match(pattern.lower(), host.lower()) is expected


def test_openssl_reasons_map_to_stable_names() -> None:
    error = ssl.SSLCertVerificationError("x")
    error.verify_code = 10
    assert tls.failed_verification(error, "h").verify_error == "expired"
    error.verify_code = 999
    assert tls.failed_verification(error, "h").verify_error == tls.OTHER_REASON


# --- the command line ---------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from fetcher.cli import afetch

    result = CliRunner().invoke(afetch, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cert_expires_within_shows_only_those_records(
    hosts: LoopbackHosts, ca: trustme.CA, ca_file: str
) -> None:
    def expiring_in(days: int) -> int:
        leaf = ca.issue_cert("localhost", not_after=NOW + datetime.timedelta(days=days, hours=1))
        return hosts.serve(OK, tls=_server(leaf))

    soon, later = expiring_in(10), expiring_in(200)
    plain = hosts.serve(OK)
    urls = [
        f"https://localhost:{soon}/",
        f"https://localhost:{later}/",
        f"http://127.0.0.1:{plain}/",
    ]
    common = ("--json", "-q", "--cacert", ca_file, "--backend", "raw")
    code, out, err = _cli(*common, "--stats", "--cert-expires-within", "30", *urls)
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0  # hidden records count for the exit status as with the status filters
    assert [r["url"] for r in records] == [urls[0]]
    assert records[0]["tls"]["cert"]["days_left"] == 10
    assert "2 filtered out" in err and "expiring within 30 days 1" in err
    # --no-tls-info: no tls object, so nothing to show either
    code, out, _ = _cli(*common, "--no-tls-info", urls[0])
    assert code == 0 and json.loads(out)["tls"] is None
    code, out, _ = _cli(*common, "--no-tls-info", "--cert-expires-within", "30", urls[0])
    assert (code, out) == (0, "")


def test_text_output_of_a_failed_verification(
    hosts: LoopbackHosts, ca: trustme.CA, tmp_path: Path
) -> None:
    port = hosts.serve(OK, tls=_case("wrong-name", ca, tmp_path))
    code, out, _ = _cli("-q", "--backend", "httpx", f"https://localhost:{port}/")
    tls_line, error_line = out.splitlines()
    assert code == 1
    assert tls_line.startswith(f"https://localhost:{port}/ tls > TLSv1.3 TLS_")
    assert tls_line.endswith(" days), not verified: unknown-issuer")
    assert error_line.startswith(f"https://localhost:{port}/ error > tls-error: ")


def test_a_handshake_that_fails_otherwise_has_no_tls_facts(
    hosts: LoopbackHosts, fetch: FetchOne
) -> None:
    """Not a verification failure (the port speaks plain HTTP): nothing to capture."""
    port = hosts.serve(replies(response("200 OK", []), wait_for_request=False))
    result = fetch(f"https://127.0.0.1:{port}/")
    assert result.error is not None and result.error.kind == "tls-error"
    assert result.tls is None


def test_no_capture_when_the_deadline_is_near() -> None:
    """The capture must not turn the tls-error into a timeout: without time left it is
    skipped, and the record says so."""
    import time

    from fetcher.backends.base import TLSReporter
    from fetcher.models import Trace

    reporter = TLSReporter(make_config(timeout=1.0), ("http/1.1",))
    trace = Trace(started=time.perf_counter() - 5.0)  # 5 s into a 1 s budget
    trace.host_ip = "127.0.0.1"
    error = ssl.SSLCertVerificationError("certificate verify failed")
    error.verify_code = 62
    reporter.failed(trace, error, "localhost")
    asyncio.run(reporter.capture(trace, 1))
    assert trace.tls is not None
    facts = trace.tls.as_dict(time.time())
    assert facts["verify_error"] == "hostname-mismatch" and facts["cert"] is None
    assert facts["cert_error"] == "certificate not captured: no time left"


# --- the offline verdict, case by case ----------------------------------------------------------


def _issue(
    issuer_key: Any = None,
    issuer_name: x509.Name | None = None,
    *,
    key: Any = None,
    names: list[x509.GeneralName] | None = None,
    cn: str | None = None,
    usage: list[x509.ObjectIdentifier] | None = None,
    days: tuple[int, int] = (-1, 30),
) -> tuple[x509.Certificate, Any]:
    """A certificate made to order (self-signed without an issuer), and its key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)] if cn else []
    subject = x509.Name(attributes or [x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "t")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + datetime.timedelta(days=days[0]))
        .not_valid_after(NOW + datetime.timedelta(days=days[1]))
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    signer = issuer_key or key
    cert = builder.sign(signer, None if _signs_without_hash(signer) else hashes.SHA256())
    return cert, key


def _signs_without_hash(key: Any) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return isinstance(key, ed25519.Ed25519PrivateKey)


@pytest.fixture(scope="module")
def root() -> tuple[x509.Certificate, Any, tls.Anchors]:
    cert, key = _issue(cn="Test Root")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return (
        cert,
        key,
        tls.Anchors([pem, b"-----BEGIN CERTIFICATE-----\nbad\n-----END CERTIFICATE-----"]),
    )


def _verdict(root: Any, host: str = "a.test", **options: Any) -> tuple[bool | None, str | None]:
    cert, key, anchors = root
    leaf, _ = _issue(key, cert.subject, **options)
    return tls.offline_verdict(leaf, host, anchors, NOW)


def test_offline_verdicts_for_a_leaf_signed_by_a_root(root: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    dns = [x509.DNSName("a.test")]
    assert _verdict(root, names=dns) == (True, None)
    assert _verdict(root, names=dns, days=(1, 30)) == (False, "not-yet-valid")
    assert _verdict(root, names=dns, days=(-30, -1)) == (False, "expired")
    assert _verdict(root, "b.test", names=dns) == (False, "hostname-mismatch")
    assert _verdict(root, names=dns, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]) == (
        False,
        "wrong-purpose",
    )
    assert _verdict(root, names=dns, usage=[ExtendedKeyUsageOID.SERVER_AUTH]) == (True, None)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert _verdict(root, names=dns, key=small) == (False, "weak-key")
    # cryptography no longer signs with SHA-1: a real leaf that reports it, for the check
    cert, key, anchors = root
    leaf, _ = _issue(key, cert.subject, names=dns)

    class SignedWithSHA1:
        def __getattr__(self, name: str) -> Any:
            return getattr(leaf, name)

        signature_hash_algorithm = hashes.SHA1()

    assert tls.offline_verdict(SignedWithSHA1(), "a.test", anchors, NOW) == (
        False,
        "weak-signature",
    )
    # no DNS name at all: the CN is the name, as OpenSSL falls back to it
    assert _verdict(root, cn="a.test") == (True, None)
    # an IP target matches IP addresses only
    ip = [x509.IPAddress(__import__("ipaddress").ip_address("10.0.0.1")), x509.DNSName("x.test")]
    assert _verdict(root, "10.0.0.1", names=ip) == (True, None)
    assert _verdict(root, "10.0.0.2", names=ip) == (False, "hostname-mismatch")
    assert _verdict(root, "10.0.0.1", cn="10.0.0.1") == (False, "hostname-mismatch")


def test_an_issuer_the_store_does_not_hold_is_unchecked_not_bad(root: Any) -> None:
    other, other_key = _issue(cn="Some Intermediate")
    leaf, _ = _issue(other_key, other.subject, names=[x509.DNSName("a.test")])
    assert tls.offline_verdict(leaf, "a.test", root[2], NOW) == (None, "issuer-unchecked")
    # a root of the store that did not sign it, under the same name, is no issuer either
    cert, _, anchors = root
    forged, _ = _issue(other_key, cert.subject, names=[x509.DNSName("a.test")])
    assert tls.offline_verdict(forged, "a.test", anchors, NOW) == (None, "issuer-unchecked")
    self_signed, _ = _issue(names=[x509.DNSName("a.test")])
    assert tls.offline_verdict(self_signed, "a.test", anchors, NOW) == (False, "self-signed")


def test_key_names() -> None:
    from cryptography.hazmat.primitives.asymmetric import dsa, ed448, ed25519, rsa

    assert tls.key_name(rsa.generate_private_key(65537, 2048).public_key()) == "RSA-2048"
    assert tls.key_name(ec.generate_private_key(ec.SECP384R1()).public_key()) == "EC-P384"
    assert tls.key_name(ec.generate_private_key(ec.SECP256K1()).public_key()) == "EC-secp256k1"
    assert tls.key_name(ed25519.Ed25519PrivateKey.generate().public_key()) == "Ed25519"
    assert tls.key_name(ed448.Ed448PrivateKey.generate().public_key()) == "Ed448"
    assert tls.key_name(dsa.generate_private_key(2048).public_key()) == "DSA-2048"


def test_a_record_without_a_certificate_under_k(tmp_path: Path) -> None:
    info = tls.TLSInfo("TLSv1.3", "X", None, None, "a.test", offline=True)
    facts = info.as_dict(NOW.timestamp())
    assert (facts["verified"], facts["verify_error"], facts["cert"]) == (
        False,
        "no-certificate",
        None,
    )
    cache = tls.VerdictCache(size=1)
    assert cache.get(b"junk", "a.test", None) == (False, "unreadable")
    assert cache.get(b"junk", "a.test", None) == (False, "unreadable")  # from the cache
    cache.get(b"more junk", "a.test", None)
    assert len(cache._entries) == 1


def test_anchors_from_a_directory_when_there_is_no_ca_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ca: trustme.CA
) -> None:
    (tmp_path / "one.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "sub").mkdir()
    paths = ssl.DefaultVerifyPaths(None, str(tmp_path), "", "", "", "")  # type: ignore[arg-type]
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: paths)
    anchors = tls.Anchors.load(None)
    assert sum(len(certs) for certs in anchors.by_subject.values()) == 1


def test_cert_expires_within_takes_whole_days() -> None:
    code, _, err = _cli("--cert-expires-within", "-3", "example.invalid")
    assert code == 2 and "whole number of days" in err
