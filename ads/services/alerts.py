"""Budget alerts: each share of a budget a brand's spend reaches, recorded once per
crossing and logged in the transaction that reached it, and e-mailed to the brand's
contact by a worker (the `ads.send_budget_alert_mail` task), queued after the commit: a
spend never waits for a mail server.
"""

import logging
import smtplib
import socket
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, Self

from celery import current_app
from django.core.mail import send_mail
from django.db import transaction
from kombu.exceptions import OperationalError as KombuOperationalError

from ads.models import BudgetAlert, BudgetKind
from ads.money import format_money

if TYPE_CHECKING:  # the kernel raises alerts as it evaluates: it imports this module
    from ads.services.kernel import BrandTotals

logger = logging.getLogger(__name__)

ALERT_THRESHOLDS = (50, 80, 100)  # percent of a budget
ALERT_MAIL_TASK = "ads.send_budget_alert_mail"  # the name of the task that mails an alert


class MailServerBusy(Exception):
    """The mail server answered "try again later" (a 4xx reply)."""


# Worth trying again later: the server could not be reached, hung up, did not answer in
# EMAIL_TIMEOUT, or said to come back. Anything else (a refused recipient, failed
# authentication, a 5xx) would fail again: it is logged, not retried.
TRANSIENT_MAIL_ERRORS: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    MailServerBusy,
)


class Crossing(NamedTuple):
    """What makes an alert unique (BudgetAlert's unique key): a brand's spend reached
    `threshold` percent of the `budget` in force for the `period`."""

    brand_id: int
    budget_kind: str
    threshold: int
    period: date
    budget: Decimal

    @classmethod
    def of(cls, alert: BudgetAlert) -> Self:
        return cls(alert.brand_id, alert.budget_kind, alert.threshold, alert.period, alert.budget)

    def as_json(self) -> dict[str, object]:
        """The mail task's arguments: JSON, the date in ISO and the money a decimal string."""
        return {**self._asdict(), "period": self.period.isoformat(), "budget": str(self.budget)}


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
    # With ignore_conflicts the rows get no ids on every backend: the mails name their
    # alerts by crossing.
    BudgetAlert.objects.bulk_create(new, ignore_conflicts=True)
    names = {brand.brand_id: brand.name for brand in totals}
    currencies = {brand.brand_id: brand.currency for brand in totals}
    for alert in new:
        logger.warning(
            "budget alert: %s reached %d%% of its %s budget for %s (%s of %s)",
            names[alert.brand_id],
            alert.threshold,
            alert.budget_kind,
            alert.period,
            format_money(alert.spend, currencies[alert.brand_id]),
            format_money(alert.budget, currencies[alert.brand_id]),
        )
    if mails := [Crossing.of(alert) for alert in new if alert.emailed_to]:
        transaction.on_commit(partial(queue_alert_mails, mails))
    return new


def queue_alert_mails(crossings: Sequence[Crossing]) -> None:
    """After the commit: hand each new alert's mail to a worker. The spend is committed
    by now and must not fail: a broker that does not take a mail is logged (once, with
    the alerts whose mails are not sent) and the alerts stay on the dashboard."""
    for sent, crossing in enumerate(crossings):
        try:
            current_app.send_task(
                ALERT_MAIL_TASK, kwargs=crossing.as_json(), retry=False, ignore_result=True
            )
        except KombuOperationalError as error:
            logger.error(
                "budget alert mail(s) not queued, the message broker did not answer (%s): "
                "%s; the alerts are on the dashboard, their mails are not sent",
                error,
                ", ".join(_describe(c) for c in crossings[sent:]),
            )
            return


def _describe(crossing: Crossing) -> str:
    return (
        f"brand {crossing.brand_id} {crossing.threshold}% of its {crossing.budget_kind} "
        f"budget for {crossing.period}"
    )


def send_alert_mail(*, crossing: Crossing) -> bool:
    """E-mail a recorded alert to the contact it names; say whether a mail went out.

    Raises the TRANSIENT_MAIL_ERRORS, for the task to try again later. Any other mail
    failure would only fail again: it is logged, and the alert stays on the dashboard.
    """
    alert = BudgetAlert.objects.select_related("brand").filter(**crossing._asdict()).first()
    if alert is None or not alert.emailed_to:  # deleted with its brand, or no contact
        return False
    brand_name, currency = alert.brand.name, alert.brand.currency
    paused = alert.threshold >= 100
    try:
        send_mail(
            subject=f"{brand_name}: {alert.threshold} % of the {alert.budget_kind} budget spent",
            message=(
                f"{brand_name} has spent {format_money(alert.spend, currency)} of its "
                f"{alert.budget_kind} budget of {format_money(alert.budget, currency)} for "
                f"{alert.period}.\n"
                + (
                    "Its campaigns are paused until the budget resets or is raised.\n"
                    if paused
                    else ""
                )
            ),
            from_email=None,
            recipient_list=[alert.emailed_to],
        )
    except TRANSIENT_MAIL_ERRORS:
        raise
    except smtplib.SMTPResponseException as error:
        if 400 <= error.smtp_code < 500:
            raise MailServerBusy(f"{error.smtp_code} {error.smtp_error!r}") from error
        _log_failure(alert, error)
        return False
    except (smtplib.SMTPException, OSError) as error:
        _log_failure(alert, error)
        return False
    return True


def _log_failure(alert: BudgetAlert, error: Exception) -> None:
    logger.error(
        "budget alert mail to %s failed (%s: %s); the alert is on the dashboard",
        alert.emailed_to,
        type(error).__name__,
        error,
    )
