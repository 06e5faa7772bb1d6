"""Every change of budget state: spend, campaign states, period roll-over, admin edits.

Concurrency rule: every writer locks the rows of the brands it touches first
(`select_for_update`, in primary-key order), then works on their campaigns. Spends,
enforcement passes and admin saves of one brand therefore run one after the other and
never act on stale counters; different brands proceed in parallel. On SQLite, whose
transactions are IMMEDIATE (see settings), the database lock does the same.

Modules: `kernel` (the shared core: locks, roll-over, evaluation, audit rows, brand
chunks), `spend`, `enforcement`, `resets`, `edits`, `alerts`, `outbox` (queued
spends), `events` (the event log), `webhooks` (its deliveries to webhooks and Slack).
Each calls the others by their public names only (ruff's PLC2701 checks it).
"""

from ads.services.alerts import ALERT_THRESHOLDS
from ads.services.edits import (
    BRAND_AUDITED_FIELDS,
    CAMPAIGN_AUDITED_FIELDS,
    SwitchResult,
    currency_change_error,
    delete_unspent,
    save_brand,
    save_campaign,
    schedule_saved,
    set_archived,
    set_campaigns_enabled,
    spend_blocking_delete,
)
from ads.services.enforcement import RefreshResult, refresh_campaign_states
from ads.services.kernel import (
    BRANDS_PER_TRANSACTION,
    SPEND_ACTOR,
    BrandTotals,
    CampaignState,
    load_windows,
)
from ads.services.outbox import SpendNotQueued, enqueue_spend
from ads.services.resets import (
    Drift,
    ReconcileResult,
    reconcile_counters,
    reset_periods,
    stale_brand_ids,
)
from ads.services.spend import (
    MAX_BATCH,
    BatchResult,
    SpendInput,
    SpendResult,
    record_spend,
    record_spend_batch,
)

__all__ = [
    "ALERT_THRESHOLDS",
    "BRANDS_PER_TRANSACTION",
    "BRAND_AUDITED_FIELDS",
    "CAMPAIGN_AUDITED_FIELDS",
    "MAX_BATCH",
    "SPEND_ACTOR",
    "BatchResult",
    "BrandTotals",
    "CampaignState",
    "Drift",
    "ReconcileResult",
    "RefreshResult",
    "SpendInput",
    "SpendNotQueued",
    "SpendResult",
    "SwitchResult",
    "currency_change_error",
    "delete_unspent",
    "enqueue_spend",
    "load_windows",
    "reconcile_counters",
    "record_spend",
    "record_spend_batch",
    "refresh_campaign_states",
    "reset_periods",
    "save_brand",
    "save_campaign",
    "schedule_saved",
    "set_archived",
    "set_campaigns_enabled",
    "spend_blocking_delete",
    "stale_brand_ids",
]
