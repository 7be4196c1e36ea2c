"""TLS for both front ends: the files checked at start (naming the flag), gRPC's credentials and
the HTTP server's ``ssl.SSLContext``, and renewal on SIGHUP.

Renewal without dropping a connection: gRPC asks :meth:`CertificateStore.grpc_config` at each
new handshake (``grpc.dynamic_ssl_server_credentials``), and the HTTP server's ``SSLContext`` has
the new chain loaded into it; connections already open keep the session they negotiated.
"""

from __future__ import annotations

import datetime
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from cnnserve.server.settings import Settings

log = logging.getLogger("cnnserve.tls")


class TlsError(ValueError):
    """A TLS file that cannot be used; the message names the flag and the file."""


@dataclass(frozen=True)
class TlsFiles:
    cert: bytes
    key: bytes
    client_ca: bytes | None  # None: no client certificates asked for


def _read(path: str, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{flag} {path}: no such file") from None
    except OSError as exc:
        raise TlsError(f"{flag} {path}: cannot read it: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise TlsError(f"{flag} {path}: not a PEM file (no -----BEGIN line)")
    return data


def _certificates(data: bytes, path: str, flag: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsError(f"{flag} {path}: not a PEM certificate: {exc}") from None
    now = datetime.datetime.now(datetime.UTC)
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string() or "(no subject)"
        if certificate.not_valid_after_utc < now:
            raise TlsError(f"{flag} {path}: the certificate {subject} expired on "
                           f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")  # fmt: skip
        if certificate.not_valid_before_utc > now:
            raise TlsError(f"{flag} {path}: the certificate {subject} is not valid before "
                           f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")  # fmt: skip
    return certificates


def read_files(settings: Settings) -> TlsFiles:
    """The certificate, key and client CA of ``settings``, checked: readable PEM, certificates
    in their validity period, and the key the certificate's."""
    cert = _read(settings.tls_cert, "--tls-cert")
    key = _read(settings.tls_key, "--tls-key")
    _certificates(cert, settings.tls_cert, "--tls-cert")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as exc:
        why = "the key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else str(exc)
        raise TlsError(f"--tls-key {settings.tls_key}: {why} (--tls-cert {settings.tls_cert})") from None
    client_ca = None
    if settings.tls_client_ca:
        client_ca = _read(settings.tls_client_ca, "--tls-client-ca")
        _certificates(client_ca, settings.tls_client_ca, "--tls-client-ca")
    return TlsFiles(cert, key, client_ca)


class CertificateStore:
    """The files in use, re-read on :meth:`reload` (SIGHUP); a reload that fails keeps the old."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.files = read_files(settings)
        self._lock = threading.Lock()
        self._pending: TlsFiles | None = None  # read, not yet handed to gRPC
        self._contexts: list[ssl.SSLContext] = []

    def reload(self) -> bool:
        """Read the files again; True when they are in use for new connections now."""
        try:
            files = read_files(self.settings)
        except TlsError as exc:
            log.error("TLS files not renewed, the old ones stay in use: %s", exc)
            return False
        with self._lock:
            self.files = self._pending = files
        for context in self._contexts:
            self._load(context, files)
        log.info("TLS files renewed: new connections get the new certificate")
        return True

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._config(self.files),
            self.grpc_config,
            require_client_authentication=self.files.client_ca is not None,
        )

    def grpc_config(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's question at each handshake: a new configuration, or None to keep the current."""
        with self._lock:
            files, self._pending = self._pending, None
        return self._config(files) if files is not None else None

    def ssl_context(self) -> ssl.SSLContext:
        """A server context for the HTTP port; :meth:`reload` loads new files into it."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load(context, self.files)
        self._contexts.append(context)
        return context

    def _load(self, context: ssl.SSLContext, files: TlsFiles) -> None:
        context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        if files.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=files.client_ca.decode())

    @staticmethod
    def _config(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(files.key, files.cert)], files.client_ca)
