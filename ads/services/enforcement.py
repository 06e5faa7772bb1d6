"""Campaign states brought up to date: the passes of the periodic tasks and the refresh
that follows every change made by a person.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ads.models import Brand
from ads.services.kernel import CampaignState, evaluate, in_brand_chunks, lock_brands, roll_over


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What a state refresh did: every state change it wrote, and the brands whose
    counters it rolled into a new day or month."""

    changes: tuple[CampaignState, ...]
    rolled_over: tuple[int, ...]


def refresh_campaign_states(
    *, at: datetime, actor: str, brand_ids: Sequence[int] | None = None
) -> RefreshResult:
    """Bring every campaign's `is_active` / `pause_reasons` up to date at `at`.

    Rolls stale counters into the brand's current local day and month first. Writes
    only campaigns whose state changes, each with one audit row naming `actor`. The
    number of queries depends on the number of brands (in chunks of
    BRANDS_PER_TRANSACTION) and of distinct state transitions, not of campaigns.
    """
    if brand_ids is None:  # a periodic pass: archived brands are switched off and left out
        current = Brand.objects.filter(archived_at__isnull=True)
        brand_ids = list(current.order_by("pk").values_list("pk", flat=True))

    def refresh(chunk: Sequence[int]) -> RefreshResult:
        rolled = roll_over(lock_brands(chunk), at=at)
        states, _ = evaluate(chunk, at=at, actor=actor)
        return RefreshResult(tuple(s for s in states if s.changed), tuple(rolled))

    done = in_brand_chunks(sorted(set(brand_ids)), refresh, what=actor)
    return RefreshResult(
        changes=tuple(s for result in done for s in result.changes),
        rolled_over=tuple(pk for result in done for pk in result.rolled_over),
    )
