"""TLS facts of one handshake: protocol, cipher, ALPN, the verification verdict and the leaf
certificate's fields, parsed lazily from its DER and cached by fingerprint.

The backends do as little as possible during the fetch: `observe()` copies four values off the
SSL object (about 3 us). Everything else waits until the record is written, and a certificate
many hosts share (a CDN's) is parsed once: `CertCache` keeps parsed certificates by SHA-256.

The verdict:

- verification on (the default): OpenSSL's, from the handshake itself, with the chain the
  server sent; a failure is the record's tls-error and `verify_error` names its reason
  (`OPENSSL_REASONS`). The backend then captures the served certificate with one unverified
  handshake (see backends/base.py `capture_tls`), since Python < 3.13 gives no access to the
  certificate of a handshake that failed verification.
- `-k`: the handshake is unverified and `offline_verdict()` checks the leaf afterwards, without
  a second handshake, against the same trust store (the system's plus --cacert). Python < 3.13
  exposes the leaf only, not the intermediates the server sent, so what can be proved from the
  leaf is checked in OpenSSL's order (issuer, key and signature strength, purpose, host name,
  validity); a leaf whose issuer is no trust anchor may be fine through an intermediate we
  cannot see: `verified` is then null, `verify_error` "issuer-unchecked".

cryptography's own x509.verification is not used for that verdict: it holds certificates to the
CA/Browser Forum profile, stricter than OpenSSL (it refuses trustme's certificates, whose
subjectAltName is critical), so it would call certificates bad that every TLS client accepts.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

# Parsed certificates kept for reuse. An estate behind a CDN shares a few hundred; each entry
# is about 1 KB, so 4096 entries cap the cache near 4 MB however many hosts a run sees.
CERT_CACHE_SIZE = 4096
# OpenSSL's security level 2 (Python's default context): RSA and DSA keys below 2048 bits fail
# with "EE key too small", SHA-1 and MD5 signatures with "CA signature digest algorithm too weak".
MIN_RSA_BITS = 2048
WEAK_HASHES = frozenset({"md5", "sha1"})
# OpenSSL verify codes (X509_V_ERR_*) -> the stable names of `verify_error`. 19 (a self-signed
# root the server sent, not in the store) and 20 (no issuer found) are both an issuer nobody
# trusts; 2 and 21 are the same without a local issuer certificate.
OPENSSL_REASONS = {
    2: "unknown-issuer",
    7: "bad-signature",
    9: "not-yet-valid",
    10: "expired",
    18: "self-signed",
    19: "unknown-issuer",
    20: "unknown-issuer",
    21: "unknown-issuer",
    23: "revoked",
    26: "wrong-purpose",
    62: "hostname-mismatch",
    64: "hostname-mismatch",
    66: "weak-key",
    68: "weak-signature",
}
OTHER_REASON = "other"  # an OpenSSL code not in the table: the error message says which
ISSUER_UNCHECKED = "issuer-unchecked"
_CURVES = {"secp256r1": "P256", "secp384r1": "P384", "secp521r1": "P521"}


@dataclass(frozen=True, slots=True)
class Cert:
    """The fields of a leaf certificate a record shows (README "JSON Lines", `tls.cert`)."""

    subject_cn: str | None
    sans: tuple[str, ...]
    issuer_cn: str | None
    issuer_org: str | None
    not_before: datetime.datetime
    not_after: datetime.datetime
    not_before_text: str  # RFC 3339, formatted once per certificate, not once per record
    not_after_text: str
    serial: str
    sha256: str
    self_signed: bool
    wildcard: bool
    key: str

    def days_left(self, now: float) -> int:
        """Whole days from `now` (epoch seconds) to not_after; negative once expired."""
        return int((self.expires - now) // 86400)

    @property
    def expires(self) -> float:
        return self.not_after.timestamp()

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "subject_cn": self.subject_cn,
            "sans": list(self.sans),
            "issuer_cn": self.issuer_cn,
            "issuer_org": self.issuer_org,
            "not_before": self.not_before_text,
            "not_after": self.not_after_text,
            "days_left": self.days_left(now),
            "serial": self.serial,
            "sha256": self.sha256,
            "self_signed": self.self_signed,
            "wildcard": self.wildcard,
            "key": self.key,
        }


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A certificate that could not be parsed: why, for `tls.cert_error`."""

    reason: str


@dataclass(slots=True)
class TLSInfo:
    """What one handshake showed. `der` is the leaf as sent (None if there was none).

    `verified`/`verify_error` come from the handshake when it verified; with -k (`offline` set)
    they are worked out on first use by offline_verdict(), against `cafile` plus the system's
    store, for `host`.
    """

    version: str | None
    cipher: str | None
    alpn: str | None
    der: bytes | None
    host: str
    verified: bool | None = None
    verify_error: str | None = None
    offline: bool = False
    cafile: str | None = None
    captured: bool = False  # the certificate came from the capture handshake after a failure
    capture_error: str | None = None  # why that capture got no certificate
    _parsed: Cert | Unreadable | None = field(default=None, repr=False)

    @property
    def cert(self) -> Cert | Unreadable | None:
        """The leaf's fields (parsed on first use, shared through CERT_CACHE), Unreadable if
        cryptography refuses the DER, None without a certificate."""
        if self._parsed is None and self.der is not None:
            self._parsed = CERT_CACHE.get(self.der)
        return self._parsed

    def settle(self) -> None:
        """With -k: work out the offline verdict once."""
        if not self.offline:
            return
        self.offline = False
        if self.der is None:
            self.verified, self.verify_error = False, "no-certificate"
            return
        self.verified, self.verify_error = VERDICTS.get(self.der, self.host, self.cafile)

    def as_dict(self, now: float) -> dict[str, Any]:
        """The record's `tls` object; `now` (epoch seconds) for `days_left`."""
        self.settle()
        cert = self.cert
        if isinstance(cert, Cert):
            facts: dict[str, Any] | None = cert.as_dict(now)
            cert_error = None
        else:
            facts = None
            cert_error = cert.reason if cert is not None else self.capture_error
        return {
            "version": self.version,
            "cipher": self.cipher,
            "alpn": self.alpn,
            "verified": self.verified,
            "verify_error": self.verify_error,
            "cert": facts,
            "cert_error": cert_error,
        }


def observe(ssl_object: Any, host: str, verify: bool, cafile: str | None) -> TLSInfo:
    """The facts of a completed handshake (an ssl.SSLObject or SSLSocket), the parsing left
    for later. `verify` False (-k): the verdict is worked out offline when first asked for."""
    cipher = ssl_object.cipher()
    return TLSInfo(
        version=ssl_object.version(),
        cipher=cipher[0] if cipher else None,
        alpn=ssl_object.selected_alpn_protocol(),
        der=ssl_object.getpeercert(binary_form=True),
        host=host,
        verified=True if verify else None,
        offline=not verify,
        cafile=cafile,
    )


def failed_verification(error: ssl.SSLCertVerificationError, host: str) -> TLSInfo:
    """The facts a handshake that failed verification leaves: its reason only (the
    certificate comes from the capture handshake, if that succeeds)."""
    code = getattr(error, "verify_code", None)
    return TLSInfo(
        version=None,
        cipher=None,
        alpn=None,
        der=None,
        host=host,
        verified=False,
        verify_error=OPENSSL_REASONS.get(code, OTHER_REASON) if code else OTHER_REASON,
    )


# --- parsing ------------------------------------------------------------------------------------


def parse_cert(der: bytes) -> Cert | Unreadable:
    """The record fields of a DER certificate, or Unreadable with cryptography's reason.

    About 140 us for all the fields (the load itself about 5 us); never raises for bad input.
    """
    from cryptography import x509

    try:
        with warnings.catch_warnings():  # e.g. a negative serial: a fact, not our warning
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            return _fields(cert, der)
    except Exception as exc:  # cryptography raises ValueError and, for odd fields, others
        text = str(exc).strip() or type(exc).__name__
        return Unreadable(f"unreadable certificate: {text[:200]}")


def _fields(cert: Any, der: bytes) -> Cert:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        sans = (*names, *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)))
    except x509.ExtensionNotFound:
        names, sans = [], ()
    subject_cn = _attribute(cert.subject, NameOID.COMMON_NAME)
    wildcard = any(name.startswith("*.") for name in names) or bool(
        subject_cn and subject_cn.startswith("*.")
    )
    return Cert(
        subject_cn=subject_cn,
        sans=tuple(sans),
        issuer_cn=_attribute(cert.issuer, NameOID.COMMON_NAME),
        issuer_org=_attribute(cert.issuer, NameOID.ORGANIZATION_NAME),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        not_before_text=_rfc3339(cert.not_valid_before_utc),
        not_after_text=_rfc3339(cert.not_valid_after_utc),
        serial=format(cert.serial_number, "x"),
        sha256=hashlib.sha256(der).hexdigest(),
        self_signed=_self_signed(cert),
        wildcard=wildcard,
        key=key_name(cert.public_key()),
    )


def _attribute(name: Any, oid: Any) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def _self_signed(cert: Any) -> bool:
    """Issued by itself: the issuer is its own subject and its own key signed it."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # a bad signature, or a key type that cannot sign (a fact, not a bug)
        return False
    return True


def key_name(key: Any) -> str:
    """`RSA-2048`, `EC-P256`, `Ed25519`, `DSA-2048`..."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC-{_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    return type(key).__name__  # pragma: no cover - X25519 and the like sign no certificate


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class CertCache:
    """Parsed certificates by SHA-256 of their DER, the least recently used dropped first.
    Hashing the DER costs about 2 us; parsing it again about 140 us."""

    def __init__(self, size: int = CERT_CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, Cert | Unreadable] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, der: bytes) -> Cert | Unreadable:
        key = hashlib.sha256(der).digest()
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry
        self.misses += 1
        entry = parse_cert(der)
        self._entries[key] = entry
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry

    def __len__(self) -> int:
        return len(self._entries)


CERT_CACHE = CertCache()


# --- the offline verdict (-k) -------------------------------------------------------------------


class Anchors:
    """A trust store for offline checks: CA certificates by subject, from the system's default
    verify paths (as ssl.create_default_context loads them) plus an optional --cacert file."""

    def __init__(self, pems: list[bytes]) -> None:
        from cryptography import x509

        self.by_subject: dict[Any, list[Any]] = {}
        marker = b"-----END CERTIFICATE-----"
        for pem in pems:
            for block in pem.split(marker)[:-1]:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        cert = x509.load_pem_x509_certificate(block + marker)
                except ValueError:  # one odd root must not cost the others
                    continue
                self.by_subject.setdefault(cert.subject, []).append(cert)

    @classmethod
    def load(cls, cafile: str | None) -> Anchors:
        """The system store (its CA file, else its directory) plus `cafile`. About 45 ms for
        Debian's 144 roots on a busy 2-core machine, once per run and only with -k (see
        prepare())."""
        import ssl

        paths = ssl.get_default_verify_paths()
        pems: list[bytes] = []
        if paths.cafile:
            pems.append(Path(paths.cafile).read_bytes())
        elif paths.capath:
            for entry in sorted(Path(paths.capath).iterdir()):
                if entry.is_file():
                    pems.append(entry.read_bytes())
        if cafile:
            pems.append(Path(cafile).read_bytes())
        return cls(pems)

    def issuer_of(self, cert: Any) -> Any | None:
        """The trust anchor that signed `cert` directly, if any."""
        for candidate in self.by_subject.get(cert.issuer, ()):
            try:
                cert.verify_directly_issued_by(candidate)
            except Exception:  # another key of the same name, or a signature that fails
                continue
            return candidate
        return None


def offline_verdict(
    cert: Any, host: str, anchors: Anchors, now: datetime.datetime
) -> tuple[bool | None, str | None]:
    """(verified, verify_error) for a leaf alone, checked in OpenSSL's order so the reason is
    the one a verifying handshake gives when the leaf is signed by a root directly: issuer,
    key and signature strength, purpose, host name, validity (the root's, then the leaf's).

    A leaf whose issuer is no trust anchor and not itself: (None, "issuer-unchecked") when the
    other checks pass, since an intermediate we cannot see may link it to one.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    root = anchors.issuer_of(cert)
    if root is None and _self_signed(cert):
        return False, "self-signed"
    key = cert.public_key()
    if isinstance(key, (rsa.RSAPublicKey, dsa.DSAPublicKey)) and key.key_size < MIN_RSA_BITS:
        return False, "weak-key"
    digest = cert.signature_hash_algorithm
    if digest is not None and digest.name in WEAK_HASHES:
        return False, "weak-signature"
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    } & set(usage):
        return False, "wrong-purpose"
    if not matches_host(cert, host):
        return False, "hostname-mismatch"
    for checked in (root, cert):
        if checked is None:
            continue
        if now > checked.not_valid_after_utc:
            return False, "expired"
        if now < checked.not_valid_before_utc:
            return False, "not-yet-valid"
    if root is None:
        return None, ISSUER_UNCHECKED
    return True, None


def matches_host(cert: Any, host: str) -> bool:
    """Whether the certificate names `host` as OpenSSL's X509_check_host/check_ip do with
    Python's flags: subjectAltName DNS names (a wildcard only as a whole leftmost label, over
    one label, with two labels after it), IP addresses for an IP literal, and the subject CN
    only when there is no DNS name (hostname_checks_common_name, on by default)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return san is not None and ip in san.get_values_for_type(x509.IPAddress)
    names = san.get_values_for_type(x509.DNSName) if san is not None else []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    wanted = host.rstrip(".").lower()
    return any(_dns_match(pattern.lower(), wanted) for pattern in names)


def _dns_match(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[2:]
    if suffix.count(".") < 1 or "*" in suffix:  # "*.com" names no one host's domain
        return False
    label, dot, rest = host.partition(".")
    return bool(label and dot) and rest == suffix


class VerdictCache:
    """Offline verdicts by (fingerprint, host, --cacert); the trust store loaded once per
    --cacert. Bounded like CertCache."""

    def __init__(self, size: int = CERT_CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[bytes, str, str | None], tuple[bool | None, str | None]]
        self._entries = OrderedDict()
        self._anchors: dict[str | None, Anchors] = {}

    def anchors(self, cafile: str | None) -> Anchors:
        """The trust store for `cafile`, loaded on first use."""
        anchors = self._anchors.get(cafile)
        if anchors is None:
            anchors = self._anchors[cafile] = Anchors.load(cafile)
        return anchors

    def get(self, der: bytes, host: str, cafile: str | None) -> tuple[bool | None, str | None]:
        key = (hashlib.sha256(der).digest(), host, cafile)
        verdict = self._entries.get(key)
        if verdict is not None:
            self._entries.move_to_end(key)
            return verdict
        verdict = self._decide(der, host, cafile)
        self._entries[key] = verdict
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return verdict

    def _decide(self, der: bytes, host: str, cafile: str | None) -> tuple[bool | None, str | None]:
        from cryptography import x509

        anchors = self.anchors(cafile)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cert = x509.load_der_x509_certificate(der)
                return offline_verdict(cert, host, anchors, datetime.datetime.now(datetime.UTC))
        except Exception:  # a certificate cryptography cannot read cannot be vouched for
            return False, "unreadable"


VERDICTS = VerdictCache()


def prepare(offline: bool, cafile: str | None) -> None:
    """What the first record would otherwise do on the event loop, done ahead (a backend calls
    this on a thread): import cryptography's X.509 modules (about 65 ms), and with -k load the
    trust store for the offline verdicts (about 45 ms)."""
    from cryptography import x509  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: F401

    if offline:
        VERDICTS.anchors(cafile)


def expires_within(tls: TLSInfo | None, days: int, now: float) -> bool:
    """Whether the record's certificate expires within `days` days of `now` (expired ones
    included): what --cert-expires-within shows."""
    cert = tls.cert if tls is not None else None
    return isinstance(cert, Cert) and cert.days_left(now) <= days
