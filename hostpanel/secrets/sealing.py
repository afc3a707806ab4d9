"""Secret values sealed to one host's X25519 public key (an ECIES-style sealed box).

The panel seals each value a host's container needs to that host's public key (made at
enrollment, ``HostCredential.public_key``; the private key never leaves the host), and only that
host's agent can open it. The construction, with the ``cryptography`` package's primitives:

1. a fresh ephemeral X25519 key pair ``(e, E)`` for every value;
2. ``shared = X25519(e, H)`` with ``H`` the host's public key (an all-zero result, from a
   low-order ``H``, is refused by the library);
3. ``key = HKDF-SHA256(shared, salt=E || H, info=INFO)``, 32 bytes: binding both public keys;
4. ``ChaCha20-Poly1305(key).encrypt(nonce, value, aad)`` with a random 12-byte nonce and the
   associated data ``aad = b"hostpanel-secret-v1\\0" + replica id + b"\\0" + secret name``, so a
   sealed value opens only for the replica and the name it was sealed for (moved to another
   replica or renamed, it is refused);
5. the box is ``VERSION || E || nonce || ciphertext+tag`` (1 + 32 + 12 + len + 16 bytes).

Opening recomputes ``shared`` with the host's private key and ``E``; a wrong key, a changed byte
or other associated data fail the Poly1305 tag: :class:`SealError`, never a wrong value.
Nothing here touches Django: the agent uses it too.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"
INFO = b"hostpanel secret sealed to a host, v1"
KEY_BYTES = 32
NONCE_BYTES = 12
HEADER_BYTES = len(VERSION) + KEY_BYTES + NONCE_BYTES


class SealError(Exception):
    """A sealed value that cannot be opened: another key, other associated data, or altered bytes."""


def associated_data(replica_id: int, name: str) -> bytes:
    """What a sealed value is bound to: one replica and one secret name."""
    return b"hostpanel-secret-v1\0" + str(int(replica_id)).encode() + b"\0" + name.encode()


def load_public_key(pem: str) -> X25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, X25519PublicKey):
        raise ValueError("the host's public key is not an X25519 key")
    return key


def load_private_key(pem: bytes) -> X25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, X25519PrivateKey):
        raise ValueError("the host's private key is not an X25519 key")
    return key


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=INFO).derive(shared)


def seal(recipient: X25519PublicKey, value: bytes, aad: bytes) -> bytes:
    """``value`` sealed to ``recipient`` (see the module docstring), bound to ``aad``."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    key = _derive(ephemeral.exchange(recipient), ephemeral_raw, _raw(recipient))
    nonce = os.urandom(NONCE_BYTES)
    return VERSION + ephemeral_raw + nonce + ChaCha20Poly1305(key).encrypt(nonce, value, aad)


def open_sealed(private: X25519PrivateKey, box: bytes, aad: bytes) -> bytes:
    """The value in ``box``, if it was sealed to ``private``'s public key with ``aad``."""
    if len(box) < HEADER_BYTES + 16 or box[:1] != VERSION:
        raise SealError("not a sealed secret (wrong length or version)")
    ephemeral_raw = box[1 : 1 + KEY_BYTES]
    nonce = box[1 + KEY_BYTES : HEADER_BYTES]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_raw))
    except ValueError as exc:  # a low-order ephemeral key: an all-zero shared secret
        raise SealError("the sealed secret's ephemeral key is invalid") from exc
    key = _derive(shared, ephemeral_raw, _raw(private.public_key()))
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, box[HEADER_BYTES:], aad)
    except InvalidTag as exc:
        raise SealError(
            "the sealed secret does not open with this host's key for this replica and name"
        ) from exc
