"""Budget alerts: each share of a budget a brand's spend reaches, recorded once per
crossing, logged, and e-mailed to the brand's contact.
"""

import logging
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from django.core.mail import send_mail
from django.db import transaction

from ads.models import BudgetAlert, BudgetKind
from ads.money import format_money

if TYPE_CHECKING:  # the kernel raises alerts as it evaluates: it imports this module
    from ads.services.kernel import BrandTotals

logger = logging.getLogger(__name__)

ALERT_THRESHOLDS = (50, 80, 100)  # percent of a budget


class Crossing(NamedTuple):
    """What makes an alert unique (BudgetAlert's unique key): a brand's spend reached
    `threshold` percent of the `budget` in force for the `period`."""

    brand_id: int
    budget_kind: str
    threshold: int
    period: date
    budget: Decimal


def raise_alerts(totals: Iterable["BrandTotals"], *, at: datetime) -> list[BudgetAlert]:
    """Record each threshold of the budget in force that a brand's spend has reached in
    the current period, once: a crossing is (brand, kind, threshold, period, budget), the
    alert's unique key. A budget raised and exhausted again is a new crossing (its pause
    is announced too), as is a budget lowered under the spend; a budget set back to one
    already crossed this period is not. New alerts are logged, and e-mailed to the
    brand's contact after the transaction commits."""
    reached: dict[Crossing, BudgetAlert] = {}
    for brand in totals:
        for kind, spend, budget, period in (
            (BudgetKind.DAILY, brand.daily_spend, brand.daily_budget, brand.day),
            (BudgetKind.MONTHLY, brand.monthly_spend, brand.monthly_budget, brand.month),
        ):
            if budget <= 0 or period is None:
                continue  # a zero budget allows nothing: there is no share to cross
            for threshold in ALERT_THRESHOLDS:
                if spend * 100 >= budget * threshold:
                    crossing = Crossing(brand.brand_id, kind, threshold, period, budget)
                    reached[crossing] = BudgetAlert(
                        brand_id=brand.brand_id,
                        budget_kind=kind,
                        threshold=threshold,
                        period=period,
                        created_at=at,
                        spend=spend,
                        budget=budget,
                        emailed_to=brand.contact_email,
                    )
    if not reached:
        return []
    recorded = BudgetAlert.objects.filter(
        brand_id__in={crossing.brand_id for crossing in reached},
        period__in={crossing.period for crossing in reached},
    )
    known = set(map(Crossing._make, recorded.values_list(*Crossing._fields)))
    new = [alert for crossing, alert in reached.items() if crossing not in known]
    BudgetAlert.objects.bulk_create(new, ignore_conflicts=True)
    names = {brand.brand_id: brand.name for brand in totals}
    for alert in new:
        logger.warning(
            "budget alert: %s reached %d%% of its %s budget for %s (%s of %s)",
            names[alert.brand_id],
            alert.threshold,
            alert.budget_kind,
            alert.period,
            format_money(alert.spend),
            format_money(alert.budget),
        )
    mails = [(names[a.brand_id], a) for a in new if a.emailed_to]
    if mails:

        def send_after_commit() -> None:  # a named function: on_commit logs its name
            _send_alert_mails(mails)

        transaction.on_commit(send_after_commit)
    return new


def _send_alert_mails(mails: Sequence[tuple[str, BudgetAlert]]) -> None:
    """Mail each new alert. The spend is committed by now: a mail server that fails
    must not fail it, so each failure is logged and the next mail still goes out (the
    alert itself stays on the dashboard)."""
    for brand_name, alert in mails:
        paused = alert.threshold >= 100
        subject = f"{brand_name}: {alert.threshold} % of the {alert.budget_kind} budget spent"
        try:
            send_mail(
                subject=subject,
                message=(
                    f"{brand_name} has spent {format_money(alert.spend)} of its "
                    f"{alert.budget_kind} budget of {format_money(alert.budget)} for "
                    f"{alert.period}.\n"
                    + ("Its campaigns are paused until the budget resets or is raised.\n"
                       if paused else "")
                ),
                from_email=None,
                recipient_list=[alert.emailed_to],
            )  # fmt: skip
        except Exception as error:  # any mail failure: log it, keep going
            logger.error(
                "budget alert mail to %s failed (%s: %s); the alert is on the dashboard",
                alert.emailed_to, type(error).__name__, error,
            )  # fmt: skip
