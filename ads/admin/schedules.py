"""Dayparting schedules with their windows."""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import Count, QuerySet
from django.forms import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone

from ads import services
from ads.admin.base import save_changed_fields
from ads.admin.forms import StaleSafeFormMixin
from ads.admin.widgets import QuarterHourSelect
from ads.models import WEEKDAYS_EMPTY, Schedule, ScheduleWindow
from ads.rules import WEEKDAY_NAMES, schedule_summary, weekday_mask, weekdays_of


class ScheduleWindowForm(StaleSafeFormMixin, forms.ModelForm[ScheduleWindow]):
    days = forms.TypedMultipleChoiceField(
        label="Weekdays",
        choices=list(enumerate(WEEKDAY_NAMES)),
        coerce=int,
        initial=list(range(7)),
        widget=forms.CheckboxSelectMultiple(attrs={"class": "weekdays"}),
        error_messages={"required": WEEKDAYS_EMPTY},
    )

    class Meta:
        model = ScheduleWindow
        fields = ("days", "start", "end")
        widgets = {"start": QuarterHourSelect(), "end": QuarterHourSelect()}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["days"] = weekdays_of(self.instance.weekdays)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self.instance.weekdays = weekday_mask(cleaned.get("days", []))
        return cleaned


class ScheduleWindowFormSet(
    BaseInlineFormSet[ScheduleWindow, Schedule, forms.ModelForm[ScheduleWindow]]
):
    def clean(self) -> None:
        """Name each bad window and its reason above the table, not only in its row."""
        super().clean()
        problems = []
        for number, form in enumerate(self.forms, start=1):
            for field, messages_ in form.errors.items():
                label = "" if field == NON_FIELD_ERRORS else f"{form.fields[field].label}: "
                problems.append(f"Window {number}: {label}{' '.join(str(m) for m in messages_)}")
        if problems:
            raise ValidationError(problems)


class ScheduleWindowInline(admin.TabularInline[ScheduleWindow, Schedule]):
    model = ScheduleWindow
    form = ScheduleWindowForm
    formset = ScheduleWindowFormSet
    min_num = 1
    extra = 0
    verbose_name = "window"

    def get_formset(self, request: HttpRequest, obj: Schedule | None = None, **kwargs: Any) -> Any:
        # min_num alone only shapes the form; a schedule must keep at least one window.
        return super().get_formset(request, obj, validate_min=True, **kwargs)


class ScheduleForm(StaleSafeFormMixin, forms.ModelForm[Schedule]):
    class Meta:
        model = Schedule
        fields = ("name",)


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin[Schedule]):
    form = ScheduleForm
    list_display = ("name", "summary", "campaign_count")
    search_fields = ("name",)
    inlines = (ScheduleWindowInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return (
            super()
            .get_queryset(request)
            .annotate(n_campaigns=Count("campaigns"))
            .prefetch_related("windows")
        )

    @admin.display(description="windows (brand's local time)")
    def summary(self, obj: Schedule) -> str:
        return schedule_summary(obj.rule_windows())

    @admin.display(description="campaigns", ordering="n_campaigns")
    def campaign_count(self, obj: Schedule) -> int:
        return int(getattr(obj, "n_campaigns", 0))

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        # What the schedule was, for the audit row written once the windows are saved.
        old = Schedule.objects.filter(pk=obj.pk).first() if obj.pk else None
        form.old_schedule = old
        form.old_windows = schedule_summary(old.rule_windows()) if old else ""
        save_changed_fields(obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        services.schedule_saved(
            form.instance,
            old=form.old_schedule,
            old_windows=form.old_windows,
            actor=request.user.get_username(),
            at=timezone.now(),
        )
