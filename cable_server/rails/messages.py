"""Rails' signed and encrypted messages, read (never written) without Ruby: sans-I/O.

A Rails app signs and encrypts cookies (and its cookie-store session) with keys derived from its
``secret_key_base``; this module is the reading half of what ActiveSupport does, so a Python
server can trust what Rails wrote:

- key derivation (``ActiveSupport::KeyGenerator``): PBKDF2-HMAC of ``secret_key_base`` with a
  salt per use, 1000 iterations in an app; HMAC-SHA1 up to Rails 6.1, SHA256 from 7.0
  (``config.active_support.key_generator_hash_digest_class``);
- signed (``ActiveSupport::MessageVerifier``): ``base64(payload) + "--" + hex(HMAC(key, base64))``;
- encrypted (``ActiveSupport::MessageEncryptor``, aes-256-gcm, Rails 5.2+):
  ``base64(ciphertext) + "--" + base64(iv) + "--" + base64(tag)``, no associated data;
- the payload's metadata envelope (``ActiveSupport::Messages::Metadata``), which binds the message
  to a purpose (a cookie's is ``cookie.<name>``) and an expiry: Rails 6.0-7.0 write
  ``{"_rails":{"message":base64(json),"exp":...,"pur":...}}``, Rails 7.1+ (with
  ``use_message_serializer_for_metadata``) ``{"_rails":{"data":value,"exp":...,"pur":...}}``;
  a payload without the envelope is the bare value (written before Rails 6.0, or with no purpose).

Only JSON payloads are loaded. A Marshal payload (``cookies_serializer = :marshal`` or
``:hybrid``) is refused, never deserialized: loading Marshal runs code chosen by whoever holds
the key. Every refusal is an :class:`InvalidMessage` whose ``reason`` is a
:class:`MessageProblem`; its text never holds the message.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import CableError

__all__ = ["InvalidMessage", "MessageProblem", "decrypt", "derive_key", "unwrap", "verify_signature"]

_MARSHAL_SIGNATURE = b"\x04\x08"
_GCM_TAG_BYTES = 16


class MessageProblem(enum.StrEnum):
    """Why a signed or encrypted message was refused."""

    MALFORMED = "malformed"
    NOT_AUTHENTIC = "not authentic (tampered, or made with another secret)"
    EXPIRED = "expired"
    PURPOSE = "made for another purpose"
    MARSHAL = "serialized with Marshal, which is never loaded (set cookies_serializer to :json)"


class InvalidMessage(CableError):
    """A Rails message that does not check out; ``reason`` is a :class:`MessageProblem`."""

    def __init__(self, reason: MessageProblem) -> None:
        super().__init__(str(reason))
        self.reason = reason


def hash_name(digest: str) -> str:
    """hashlib's name for a Rails digest name (``"SHA1"``, ``"SHA256"``...), checked to exist."""
    name = digest.lower().replace("-", "")
    if name not in hashlib.algorithms_available:
        raise ValueError(f"unknown digest {digest!r}")
    return name


@functools.lru_cache(maxsize=64)
def derive_key(secret_key_base: str, salt: str, length: int, digest: str, iterations: int) -> bytes:
    """``KeyGenerator.new(secret_key_base, iterations:, hash_digest_class:).generate_key(salt, length)``.

    Cached: a key costs ``iterations`` HMACs, and every connection needs the same few.
    """
    return hashlib.pbkdf2_hmac(hash_name(digest), secret_key_base.encode(), salt.encode(), iterations, length)


def _strict_b64decode(text: str) -> bytes:
    """Ruby's ``Base64.strict_decode64``: the standard alphabet, padded, nothing else."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidMessage(MessageProblem.MALFORMED) from None


def verify_signature(message: str, key: bytes, digest: str) -> bytes:
    """The payload of a ``MessageVerifier`` message whose HMAC checks out."""
    data, _, rest = message.partition("--")
    signature = rest.partition("--")[0]  # Ruby's split("--") ignores a third part
    if not data or not signature:
        raise InvalidMessage(MessageProblem.MALFORMED)
    expected = hmac.new(key, data.encode("utf-8", "surrogatepass"), hash_name(digest)).hexdigest()
    if not hmac.compare_digest(signature.encode("utf-8", "surrogatepass"), expected.encode()):
        raise InvalidMessage(MessageProblem.NOT_AUTHENTIC)
    return _strict_b64decode(data)


def decrypt(message: str, key: bytes) -> bytes:
    """The plaintext of an aes-256-gcm ``MessageEncryptor`` message whose tag checks out."""
    parts = message.split("--")
    if len(parts) < 3:
        raise InvalidMessage(MessageProblem.MALFORMED)
    ciphertext, iv, tag = (_strict_b64decode(part) for part in parts[:3])
    if len(tag) != _GCM_TAG_BYTES:
        raise InvalidMessage(MessageProblem.MALFORMED)
    try:
        return AESGCM(key).decrypt(iv, ciphertext + tag, b"")
    except InvalidTag:
        raise InvalidMessage(MessageProblem.NOT_AUTHENTIC) from None
    except ValueError:  # an IV of a length AES-GCM does not take (OpenSSL takes 8 to 128 bytes)
        raise InvalidMessage(MessageProblem.MALFORMED) from None


def _load_json(payload: bytes) -> Any:
    if payload.startswith(_MARSHAL_SIGNATURE):
        raise InvalidMessage(MessageProblem.MARSHAL)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise InvalidMessage(MessageProblem.MALFORMED) from None


def _check_expiry(expires_at: Any, now: datetime) -> None:
    if expires_at is None:
        return
    try:
        moment = datetime.fromisoformat(expires_at)
    except (TypeError, ValueError):
        raise InvalidMessage(MessageProblem.MALFORMED) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if now >= moment:
        raise InvalidMessage(MessageProblem.EXPIRED)


def unwrap(payload: bytes, purpose: str | None, now: datetime | None = None) -> Any:
    """The value of a verified or decrypted payload, once its purpose and expiry are checked.

    As ``Messages::Metadata.verify``: the message's purpose must equal ``purpose`` (no purpose
    matches only ``None``), and its expiry, if any, must be in the future.
    """
    document = _load_json(payload)
    envelope = document.get("_rails") if isinstance(document, dict) else None
    if not isinstance(envelope, dict):
        if purpose is not None:
            raise InvalidMessage(MessageProblem.PURPOSE)
        return document
    message_purpose = envelope.get("pur")
    if ("" if message_purpose is None else str(message_purpose)) != (purpose or ""):
        raise InvalidMessage(MessageProblem.PURPOSE)
    _check_expiry(envelope.get("exp"), now or datetime.now(UTC))
    if "data" in envelope:  # Rails 7.1+: the value itself
        return envelope["data"]
    encoded = envelope.get("message")
    if not isinstance(encoded, str):
        raise InvalidMessage(MessageProblem.MALFORMED)
    return _load_json(_strict_b64decode(encoded))
