"""The Django admin: one module per object, each registering its model admins.

`forms` holds the stale-safe change forms, `widgets` and `presenters` what the pages
show, `base` what the model admins share. Importing this package registers every model
admin. The site itself is `ads.admin_site`, outside this package: Django imports the
default site while this package registers, and a site inside it would be created twice
(the registrations landing on the first).
"""

from ads.admin import api_keys, audit, brands, campaigns, events, ledger, schedules, webhooks
from ads.admin.base import ArchivableAdmin, ReadOnlyAdmin

__all__ = [
    "ArchivableAdmin",
    "ReadOnlyAdmin",
    "api_keys",
    "audit",
    "brands",
    "campaigns",
    "events",
    "ledger",
    "schedules",
    "webhooks",
]
