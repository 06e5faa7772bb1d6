"""The HTTP API, /api/v1/: spend ingestion and budget status for other systems.

A thin interface like the command and the admin: each view turns the request into
typed arguments, calls a service or a selector, and reports. Money travels as decimal
strings, never JSON numbers; times as ISO-8601 with an offset.

One module per object: `spend`, `brands`, `campaigns`, `events`, `health`; their shapes in
`schemas`, the key check in `auth`, the answers to errors in `errors`.
"""

from ninja import NinjaAPI
from ninja.operation import Operation

from ads.api import brands, campaigns, errors, events, health, spend
from ads.api.auth import KeyAuth


class BudgetGuardAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation: Operation) -> str:
        # The ids the API has had since it was one module (clients generate code from
        # them): "ads_api_" and the view's name, whichever module the view is in.
        return f"ads_api_{operation.view_func.__name__}"


api = BudgetGuardAPI(
    title="Ad Budget Guard API",
    version="1",
    urls_namespace="api-v1",
    auth=KeyAuth(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)
errors.install(api)
for module in (spend, brands, campaigns, events, health):
    api.add_router("", module.router)

__all__ = ["api"]
