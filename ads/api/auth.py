"""Who is calling: an API key from the `X-API-Key` header."""

import logging

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import APIKeyHeader

from ads.api_keys import check_key
from ads.models import ApiKey

logger = logging.getLogger("ads.api")


class KeyAuth(APIKeyHeader):
    """`X-API-Key: abg_...`; keys are created, limited to brands and revoked in the admin."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        api_key = check_key(key or "", at=timezone.now())
        logger.info(
            "api %s %s key=%s", request.method, request.path, api_key.prefix if api_key else "-"
        )
        return api_key


def caller(request: HttpRequest) -> ApiKey:
    """The key KeyAuth accepted for this request."""
    api_key: ApiKey = request.auth  # type: ignore[attr-defined]  # set by KeyAuth
    return api_key
