"""DRF throttles whose rates are read when a request comes (``REST_FRAMEWORK
["DEFAULT_THROTTLE_RATES"]``), not when DRF is imported, so settings changes apply.

The counts live in Django's default cache (``CACHE_URL``): shared by every server process.
"""

from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


def rate_of(scope: str | None) -> str | None:
    """The scope's rate from the settings; an empty rate switches the scope off."""
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope or "")
    return str(rate) if rate else None


class AnonThrottle(AnonRateThrottle):
    """Requests with no signed-in user (logins, the schema and docs), per client address."""

    def get_rate(self) -> str | None:
        return rate_of(self.scope)


class UserThrottle(UserRateThrottle):
    """Per signed-in user (per address when anonymous), scope ``user``; a view may name its
    own budget with ``throttle_scope`` (DICOMweb: a series loads frame by frame)."""

    def get_rate(self) -> str | None:
        return rate_of(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = getattr(view, "throttle_scope", None) or "user"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)
