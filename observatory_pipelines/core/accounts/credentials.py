"""The arenas' API credentials: encrypted at rest, added, listed, disabled and re-keyed by an admin.

Encryption
    AES-256-GCM with the key in ``OBSERVATORY_CREDENTIAL_KEY`` (32 random bytes, URL-safe base64;
    ``observatory credentials new-key`` prints one). ``encrypted_payload`` holds the 12-byte nonce
    followed by the ciphertext and its tag. The associated data is the row's id, platform and name,
    so a payload copied onto another row (or a row renamed behind our back) no longer decrypts.

Secrets
    A secret is a string: an API key, or JSON when the platform needs several fields (an id and a
    secret, a token pair). It lives in a ``settings.Secret`` from the moment it is read, so it never
    shows in a ``repr``, a log line or an error message; ``CredentialInfo`` has no secret at all.

Platforms
    ``known_platforms()`` is the one list of platforms a credential may be added for: those of the
    registered arenas that need one, and ``API_PLATFORMS``, the platforms whose keyed APIs the
    observatory collects from or is adding arenas for (keys may be stored before the arena ships).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from observatory_pipelines.core.collection.arenas import registry
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.platform import months, settings
from observatory_pipelines.core.platform.errors import ConfigError, ObservatoryError
from observatory_pipelines.core.platform.settings import Secret

KEY_VARIABLE = settings.OBSERVATORY_CREDENTIAL_KEY.name
KEY_BYTES = 32
NONCE_BYTES = 12

#: Keyed APIs the observatory collects from, or is adding arenas for.
API_PLATFORMS = (
    "bluesky",
    "facebook",
    "google_search",
    "instagram",
    "reddit",
    "telegram",
    "threads",
    "tiktok",
    "x_twitter",
    "youtube",
)


class CredentialProblem(ObservatoryError):
    """A credential cannot be added, found, decrypted or changed; the message says why."""


def known_platforms() -> tuple[str, ...]:
    credentialed = {cls.platform for cls in registry().values() if cls.needs_credential}
    return tuple(sorted(credentialed | set(API_PLATFORMS)))


def check_platform(platform: str) -> str:
    name = (platform or "").strip().lower()
    known = known_platforms()
    if name not in known:
        raise CredentialProblem(f"unknown platform {platform!r}; credentials are kept for {', '.join(known)}")
    return name


def check_name(name: str) -> str:
    stated = (name or "").strip()
    if not stated or any(ch.isspace() for ch in stated) or len(stated) > 100:
        raise CredentialProblem(f"{name!r} is not a credential name: use up to 100 characters without spaces")
    return stated


def check_terms(tier: str, daily_quota: int | None) -> str:
    """The tier's name; a one-line error for an unknown tier or a negative quota."""
    if daily_quota is not None and daily_quota < 0:
        raise CredentialProblem(f"a daily quota is 0 or more uses, not {daily_quota}")
    return Tier.parse(tier).value


def check_secret(secret: Secret) -> Secret:
    """The secret without surrounding whitespace; JSON (starting with ``{``) must parse to an object."""
    value = secret.reveal().strip()
    if not value:
        raise CredentialProblem("the secret is empty; give the API key (or the JSON of its fields) on stdin")
    if value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError as err:
            # Only the position: the message of a JSON error quotes the text around it.
            raise CredentialProblem(
                f"the secret starts with '{{' but is not valid JSON (line {getattr(err, 'lineno', '?')}, "
                f"column {getattr(err, 'colno', '?')}); give one JSON object of the platform's fields"
            ) from None
        if not isinstance(parsed, dict):
            raise CredentialProblem("the secret's JSON must be one object of the platform's fields")
    return Secret(value)


# --- the key and the cipher ---------------------------------------------------------------------------


class CredentialKey:
    """The AES-256 key; like ``Secret``, it never prints itself."""

    __slots__ = ("_aead",)

    def __init__(self, raw: bytes):
        if len(raw) != KEY_BYTES:
            raise ValueError(f"a credential key is {KEY_BYTES} bytes")
        self._aead = AESGCM(raw)

    def __repr__(self) -> str:
        return "CredentialKey('********')"

    __str__ = __repr__

    @classmethod
    def parse(cls, secret: Secret | None, source: str = KEY_VARIABLE) -> CredentialKey:
        """The key written as URL-safe base64 (padding optional); ``source`` names where it came from."""
        if secret is None or not secret.reveal().strip():
            raise ConfigError(
                f"{source} is not set, so API credentials cannot be encrypted or read; set it to the key "
                "they were added with (a new one: observatory credentials new-key)"
            )
        text = secret.reveal().strip()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEY_BYTES:
            raise ConfigError(
                f"{source} is not a credential key ({KEY_BYTES} bytes in URL-safe base64); "
                "make one with: observatory credentials new-key"
            )
        return cls(raw)

    @classmethod
    def from_settings(cls) -> CredentialKey:
        return cls.parse(settings.current().credential_key)

    def encrypt(self, plaintext: str, associated: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), associated)

    def decrypt(self, payload: bytes, associated: bytes) -> str:
        """Raises ``InvalidTag`` for a wrong key or a payload of another row."""
        nonce, sealed = payload[:NONCE_BYTES], payload[NONCE_BYTES:]
        return self._aead.decrypt(nonce, sealed, associated).decode("utf-8")


def new_key() -> str:
    """A fresh key, as ``OBSERVATORY_CREDENTIAL_KEY`` takes it."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def associated_data(credential_id: uuid.UUID, platform: str, name: str) -> bytes:
    return f"{credential_id}|{platform}|{name}".encode()


def seal(key: CredentialKey, credential_id: uuid.UUID, platform: str, name: str, secret: Secret) -> bytes:
    return key.encrypt(secret.reveal(), associated_data(credential_id, platform, name))


def unseal(key: CredentialKey, credential_id: uuid.UUID, platform: str, name: str, payload: bytes) -> Secret:
    try:
        return Secret(key.decrypt(bytes(payload), associated_data(credential_id, platform, name)))
    except InvalidTag:
        raise CredentialProblem(
            f"credential {platform}/{name} does not decrypt: {KEY_VARIABLE} is not the key it was added with, "
            "or its payload was copied from another row; re-add it"
        ) from None


# --- what an admin sees and does ---------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialInfo:
    """Everything about a credential but its secret."""

    id: uuid.UUID
    platform: str
    name: str
    tier: str
    is_active: bool
    daily_quota: int | None
    used_today: int
    last_used_at: datetime | None
    last_error: str | None
    exhausted_until: datetime | None

    def spent(self, now: datetime) -> bool:
        if self.exhausted_until is not None and self.exhausted_until > now:
            return True
        return self.daily_quota is not None and self.used_today >= self.daily_quota

    @property
    def flagged(self) -> bool:
        """Switched off by the pool (or by an admin) after the platform refused it."""
        return not self.is_active and self.last_error is not None


def _infos(conn: sa.Connection, where: str, params: dict, now: datetime) -> list[CredentialInfo]:
    rows = conn.execute(
        sa.text(
            "SELECT id, platform, credential_name, tier, is_active, daily_quota, "
            "CASE WHEN quota_date = :today THEN quota_used_today ELSE 0 END, "
            f"last_used_at, last_error, exhausted_until FROM api_credentials WHERE {where} "
            "ORDER BY platform, tier, credential_name"
        ),
        {**params, "today": now.date()},
    ).all()
    return [CredentialInfo(*row) for row in rows]


def list_credentials(engine: sa.Engine, now: datetime | None = None) -> list[CredentialInfo]:
    with engine.connect() as conn:
        return _infos(conn, "true", {}, months.utc(now))


def find_credential(conn: sa.Connection, platform: str, name: str, now: datetime | None = None) -> CredentialInfo:
    found = _infos(
        conn, "platform = :platform AND credential_name = :name", {"platform": platform, "name": name}, months.utc(now)
    )
    if not found:
        raise CredentialProblem(f"no {platform} credential named {name!r}; see: observatory credentials list")
    return found[0]


def add_credential(
    engine: sa.Engine,
    key: CredentialKey,
    platform: str,
    name: str,
    secret: Secret,
    *,
    tier: str = "free",
    daily_quota: int | None = None,
    created_by: uuid.UUID | None = None,
) -> CredentialInfo:
    platform = check_platform(platform)
    name = check_name(name)
    tier = check_terms(tier, daily_quota)
    secret = check_secret(secret)
    credential_id = uuid.uuid4()
    duplicate = CredentialProblem(
        f"a {platform} credential named {name!r} already exists; choose another name "
        "(or disable the old one: observatory credentials disable)"
    )
    with engine.begin() as conn:
        # ON CONFLICT covers an admin adding the same name at the same moment.
        added = conn.execute(
            sa.text(
                """
                INSERT INTO api_credentials (id, platform, tier, credential_name, encrypted_payload, daily_quota,
                                             created_by)
                VALUES (:id, :platform, :tier, :name, :payload, :quota, :created_by)
                ON CONFLICT (platform, credential_name) DO NOTHING
                RETURNING id
                """
            ),
            {
                "id": credential_id,
                "platform": platform,
                "tier": tier,
                "name": name,
                "payload": seal(key, credential_id, platform, name, secret),
                "quota": daily_quota,
                "created_by": created_by,
            },
        ).first()
        if added is None:
            raise duplicate
        return find_credential(conn, platform, name)


def set_active(engine: sa.Engine, platform: str, name: str, active: bool) -> CredentialInfo:
    """Enable or disable a credential. Enabling clears the error that flagged it: the admin says it is fixed."""
    with engine.begin() as conn:
        found = find_credential(conn, platform, name)
        conn.execute(
            sa.text(
                "UPDATE api_credentials SET is_active = :active, updated_at = now(), "
                "last_error = CASE WHEN :active THEN NULL ELSE last_error END WHERE id = :id"
            ),
            {"active": active, "id": found.id},
        )
        return find_credential(conn, platform, name)


def rekey(
    engine: sa.Engine, old: CredentialKey, new: CredentialKey, *, progress: Callable[[str], None] = lambda m: None
) -> int:
    """Re-encrypt every credential under ``new``, in one transaction: if any does not decrypt under
    ``old``, nothing changes. The rows stay locked meanwhile, so no lease reads a half-done pool."""
    with engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, platform, credential_name, encrypted_payload FROM api_credentials ORDER BY id FOR UPDATE"
            )
        ).all()
        for credential_id, platform, name, payload in rows:
            secret = unseal(old, credential_id, platform, name, payload)
            conn.execute(
                sa.text("UPDATE api_credentials SET encrypted_payload = :payload, updated_at = now() WHERE id = :id"),
                {"payload": seal(new, credential_id, platform, name, secret), "id": credential_id},
            )
            progress(f"{platform}/{name}")
    return len(rows)
