"""A signer whose private key never leaves a PKCS#11 token: an HSM, a smart card, SoftHSM.

``--key 'pkcs11:token=LABEL;object=KEY'`` (a subset of RFC 7512) names the token
by its label and the key by its object label; the signer's certificate is the
certificate object with the same label on that token, and the other
certificates on the token that issue it complete the chain. The PIN comes from
``INTERP_DOSSIER_PKCS11_PIN`` or, on a terminal, a prompt; it is never taken
from the URI. The token's library comes from ``INTERP_DOSSIER_PKCS11_MODULE``
(default: Debian's SoftHSM, ``/usr/lib/softhsm/libsofthsm2.so``).

Both signatures of a bundle are made on the token: the DSSE signature with
``CKM_SHA256_RSA_PKCS_PSS`` (MGF1-SHA-256, 32-byte salt, exactly what
verification accepts) and the PAdES signature through pyHanko's PKCS#11
signer. Keys must be RSA: an ECDSA signature makes pyHanko declare PDF 2.0,
which PDF/A-3 does not allow.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pyhanko.sign import signers

from signing.errors import KeyLoadError, SigningError

__all__ = ["MODULE_ENV", "PIN_ENV", "Pkcs11Signer", "Pkcs11Uri", "is_pkcs11_uri"]

#: Environment variable holding the token's user PIN.
PIN_ENV = "INTERP_DOSSIER_PKCS11_PIN"
#: Environment variable naming the PKCS#11 library of the token.
MODULE_ENV = "INTERP_DOSSIER_PKCS11_MODULE"
_DEFAULT_MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
_SCHEME = "pkcs11:"


def is_pkcs11_uri(value: str | os.PathLike[str]) -> bool:
    """True if ``value`` names a key on a PKCS#11 token rather than a key file."""
    return str(value).startswith(_SCHEME)


@dataclass(frozen=True)
class Pkcs11Uri:
    """The token and key a ``pkcs11:`` URI names."""

    token: str
    object: str

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        """``pkcs11:token=LABEL;object=KEY`` (percent-encoding allowed); a clear error otherwise."""
        hint = "write it as 'pkcs11:token=LABEL;object=KEY' (the PIN goes in $" + PIN_ENV + ", not in the URI)"
        if not is_pkcs11_uri(text):
            raise KeyLoadError(f"{text!r} is not a pkcs11: URI", hint=hint)
        parts: dict[str, str] = {}
        for item in text[len(_SCHEME) :].split("?")[0].split(";"):
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep:
                raise KeyLoadError(f"the pkcs11: URI has an attribute without a value: {item!r}", hint=hint)
            parts[name.strip()] = unquote(value)
        if "pin-value" in parts or "pin-value" in text:
            raise KeyLoadError("the pkcs11: URI carries a PIN; keep the PIN out of command lines", hint=hint)
        unknown = sorted(set(parts) - {"token", "object", "type"})
        if unknown:
            raise KeyLoadError(f"the pkcs11: URI has attributes this signer does not read: {', '.join(unknown)}",
                               hint=hint)  # fmt: skip
        missing = [k for k in ("token", "object") if not parts.get(k)]
        if missing:
            raise KeyLoadError(f"the pkcs11: URI names no {' and no '.join(missing)}", hint=hint)
        return cls(token=parts["token"], object=parts["object"])


def _module() -> str:
    chosen = os.environ.get(MODULE_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise KeyLoadError(f"the PKCS#11 library {chosen} (from ${MODULE_ENV}) does not exist",
                               hint="point it at your token's PKCS#11 module (.so)")  # fmt: skip
        return chosen
    for candidate in _DEFAULT_MODULES:
        if Path(candidate).is_file():
            return candidate
    raise KeyLoadError(
        "no PKCS#11 library found",
        hint=f"set {MODULE_ENV} to your token's PKCS#11 module, or install Debian's softhsm2",
    )


def _pin() -> str:
    pin = os.environ.get(PIN_ENV)
    if pin is not None:
        return pin
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass("token PIN: ")
    raise KeyLoadError("the token's PIN is needed", hint=f"set {PIN_ENV} or run on a terminal to be asked")


class Pkcs11Signer:
    """A :class:`~signing.keys.Signer` whose RSA key stays on a PKCS#11 token."""

    def __init__(self, uri: Pkcs11Uri, *, pin: str | None = None, module: str | None = None) -> None:
        try:
            import pkcs11
            from pkcs11 import Attribute, ObjectClass
            from pkcs11.exceptions import (
                NoSuchKey,
                NoSuchToken,
                PinIncorrect,
                PinLenRange,
                PKCS11Error,
                UserAlreadyLoggedIn,
            )
        except ImportError:
            raise KeyLoadError(
                "signing with a PKCS#11 token needs the python-pkcs11 package",
                hint="install interp-dossier with its 'hsm' extra: pip install 'interp-dossier[hsm]'",
            ) from None
        self.uri = uri
        library = module or _module()
        try:
            lib = pkcs11.lib(library)
        except (RuntimeError, OSError, PKCS11Error) as exc:
            raise KeyLoadError(f"cannot load the PKCS#11 library {library}: {exc}") from None
        try:
            token = lib.get_token(token_label=uri.token)
        except NoSuchToken:
            labels = sorted(t.label for t in _tokens(lib))
            raise KeyLoadError(
                f"no PKCS#11 token labelled {uri.token!r} in {library}",
                hint=f"tokens present: {', '.join(map(repr, labels)) or 'none'}",
            ) from None
        try:
            try:
                self._session = token.open(user_pin=pin if pin is not None else _pin())
            except UserAlreadyLoggedIn:  # this process holds a logged-in session: the login is per token
                self._session = token.open()
        except (PinIncorrect, PinLenRange):
            raise KeyLoadError(f"wrong PIN for token {uri.token!r}", hint=f"check {PIN_ENV}") from None
        except PKCS11Error as exc:
            raise KeyLoadError(f"cannot open token {uri.token!r}: {type(exc).__name__}") from None
        try:
            self._key = self._session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=uri.object)
        except NoSuchKey:
            self.close()
            raise KeyLoadError(f"token {uri.token!r} holds no private key labelled {uri.object!r}") from None
        certificates = [
            x509.load_der_x509_certificate(bytes(obj[Attribute.VALUE]))
            for obj in self._session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE})
        ]
        wanted = {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: uri.object}
        labelled = [
            x509.load_der_x509_certificate(bytes(obj[Attribute.VALUE])) for obj in self._session.get_objects(wanted)
        ]
        if not labelled:
            self.close()
            raise KeyLoadError(
                f"token {uri.token!r} holds no certificate labelled {uri.object!r}",
                hint="import the signer's certificate on the token with the same label as its key",
            )
        leaf = labelled[0]
        if not isinstance(leaf.public_key(), rsa.RSAPublicKey):
            self.close()
            raise KeyLoadError(
                f"the key {uri.object!r} on token {uri.token!r} is not an RSA key",
                hint="PDF/A-3 signatures need RSA: an ECDSA signature makes the PDF declare version 2.0",
            )
        self._chain = _chain_of(leaf, certificates)

    @property
    def certificate(self) -> x509.Certificate:
        """The signer's (leaf) certificate, read from the token."""
        return self._chain[0]

    @property
    def chain(self) -> list[x509.Certificate]:
        """The certificate chain, leaf first, as far as the token's certificates reach."""
        return list(self._chain)

    def sign(self, data: bytes) -> bytes:
        """A raw RSASSA-PSS / SHA-256 signature (MGF1-SHA-256, salt 32) made on the token."""
        from pkcs11 import MGF, Mechanism
        from pkcs11.exceptions import PKCS11Error

        try:
            signature: bytes = self._key.sign(  # type: ignore[attr-defined]
                data, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=(Mechanism.SHA256, MGF.SHA256, 32)
            )
        except PKCS11Error as exc:
            raise SigningError(f"the token refused to sign: {type(exc).__name__}") from None
        return signature

    def pyhanko_signer(self) -> signers.Signer:
        """The same key as pyHanko's PKCS#11 signer (for PAdES)."""
        from pyhanko.sign.pkcs11 import PKCS11Signer

        der = serialization.Encoding.DER
        certs = [asn1_x509.Certificate.load(c.public_bytes(der)) for c in self._chain]
        return PKCS11Signer(
            self._session, signing_cert=certs[0], ca_chain=certs[1:], key_label=self.uri.object, embed_roots=True
        )

    def close(self) -> None:
        """End the session with the token."""
        try:
            self._session.close()
        except Exception:  # noqa: BLE001 - closing a session that is already gone is not an error
            pass


def _tokens(lib: Any) -> list[Any]:
    try:
        return list(lib.get_tokens())
    except Exception:  # noqa: BLE001 - the list is only a hint
        return []


def _chain_of(leaf: x509.Certificate, certificates: list[x509.Certificate]) -> list[x509.Certificate]:
    """``leaf`` and, nearest first, the certificates among ``certificates`` that issue it in turn."""
    chain = [leaf]
    while chain[-1].issuer != chain[-1].subject:
        issuer = next((c for c in certificates if c.subject == chain[-1].issuer and c not in chain), None)
        if issuer is None:
            break
        chain.append(issuer)
    return chain
