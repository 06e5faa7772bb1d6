"""Issuing and checking API keys: `abg_<prefix>_<secret>`, stored as a hash."""

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from ads.models import ApiKey

KEY_PREFIX = "abg"
# last_used_at is written at most this often per key, not on every request.
USAGE_RESOLUTION = timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key(api_key: ApiKey) -> str:
    """Give an unsaved ApiKey its prefix and hash; return the full key, to show once."""
    api_key.prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    api_key.secret_hash = _hash(secret)
    return f"{KEY_PREFIX}_{api_key.prefix}_{secret}"


def check_key(presented: str, *, at: datetime) -> ApiKey | None:
    """The live key matching `presented`, or None (unknown, malformed or revoked)."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    api_key = ApiKey.objects.filter(prefix=parts[1], revoked_at__isnull=True).first()
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, _hash(parts[2])):
        return None
    if api_key.last_used_at is None or at - api_key.last_used_at >= USAGE_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=at)
    return api_key
