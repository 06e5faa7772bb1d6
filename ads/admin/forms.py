"""Admin forms that save only what this person changed on this page, and refuse a change
that would silently undo a colleague's.

Each field carries its value as the page showed it (Django's `show_hidden_initial`), so
"changed" means changed on this page, not "differs from the database now": a stale page
saved with only a budget change no longer writes back an old switch. A field this person
changed that someone else also changed since the page was opened is a conflict: the
form is refused with both values, and nothing is written.

The admin locks the brand row while it validates and saves (`lock_brand_for_post` in
`ads.admin.base`), so no other writer can slip in between this check and the save.
"""

from collections.abc import Iterable, Mapping
from datetime import UTC
from functools import cached_property
from typing import Any

from django import forms
from django.db.models import Model
from django.http import QueryDict

from ads.selectors import last_setting_change

EDIT_CONFLICT = (
    "{who} changed this to {current} since you opened this page (the page showed {seen}); "
    "you entered {yours}. Nothing was saved. Keep the current value, or enter yours again "
    "and save to replace it."
)


def shown_value(field: forms.Field, value: object) -> str:
    """A value as a person reads it in a conflict message."""
    if isinstance(field, forms.BooleanField):
        return "on" if value else "off"
    if isinstance(field, forms.ModelChoiceField) and field.queryset is not None:
        if isinstance(field, forms.ModelMultipleChoiceField):
            many = value if isinstance(value, Iterable) and not isinstance(value, str) else []
            keys = [getattr(item, "pk", item) for item in many]
            names = [str(obj) for obj in field.queryset.filter(pk__in=keys)]
            return ", ".join(sorted(names)) or "none"
        if isinstance(value, Model):
            return str(value)
        obj = field.queryset.filter(pk=value).first() if value not in (None, "") else None
        return str(obj) if obj is not None else "none"
    if isinstance(field, forms.MultipleChoiceField):
        labels = dict(field.choices)  # type: ignore[arg-type]  # choices are (value, label) pairs
        chosen = value if isinstance(value, list | tuple) else []
        return ", ".join(str(labels.get(v, labels.get(str(v), v))) for v in chosen) or "none"
    if value in (None, ""):
        return "empty"
    if hasattr(value, "strftime") and hasattr(value, "hour"):
        return value.strftime("%H:%M")  # type: ignore[no-any-return]  # a time or datetime
    return str(value)


class StaleSafeFormMixin(forms.BaseForm):
    """For a ModelForm: changed = changed on this page; conflicting edits refused.

    A POST without the page's values (a script, an old test client form) falls back to
    comparing with the database, as Django does by default.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.show_hidden_initial = True

    def page_showed(self, name: str) -> bool:
        """Whether the POST carries this field's value as the page showed it."""
        return self.is_bound and self[name].html_initial_name in self.data

    def page_value(self, name: str) -> Any:
        """The field's value as the page showed it, as posted (not yet parsed)."""
        return (
            self.fields[name]
            .hidden_widget()
            .value_from_datadict(self.data, self.files, self[name].html_initial_name)
        )

    @cached_property
    def changed_data(self) -> list[str]:
        return [name for name in self.fields if self._changed_here(name)]

    def _changed_here(self, name: str) -> bool:
        field, bound = self.fields[name], self[name]
        try:
            if not self.page_showed(name):
                return field.has_changed(bound.initial, bound.data)
            return field.has_changed(field.to_python(self.page_value(name)), bound.data)
        except (forms.ValidationError, ArithmeticError):
            return True  # unreadable (e.g. 'sNaN'): the field's own error says why

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        instance = getattr(self, "instance", None)
        if instance is None or instance.pk is None:
            return cleaned
        refreshed: dict[str, object] = {}
        for name in self.changed_data:
            if not self.page_showed(name) or name in self.errors:
                continue
            field, bound = self.fields[name], self[name]
            seen_raw = self.page_value(name)
            moved = field.has_changed(bound.initial, seen_raw)
            if not moved or not field.has_changed(bound.initial, bound.data):
                continue  # nobody else touched it, or both chose the same value
            try:
                seen = field.to_python(seen_raw)
            except forms.ValidationError:
                seen = seen_raw
            self.add_error(
                name,
                EDIT_CONFLICT.format(
                    who=last_changed_by(instance, name),
                    current=shown_value(field, bound.initial),
                    seen=shown_value(field, seen),
                    yours=shown_value(field, cleaned.get(name, bound.data)),
                ),
            )
            refreshed[bound.html_initial_name] = field.prepare_value(bound.initial)
        if refreshed:
            self.show_current_as_seen(refreshed)
        return cleaned

    def show_current_as_seen(self, values: Mapping[str, object]) -> None:
        """The re-rendered page shows the current value as the one this person has now
        seen, so saving it again means "replace it with mine"."""
        if not isinstance(self.data, QueryDict):
            return
        data = self.data.copy()
        for key, value in values.items():
            if isinstance(value, list | tuple):
                data.setlist(key, [str(getattr(v, "pk", v)) for v in value])
            else:
                data[key] = "" if value is None else str(value)
        self.data = data


def last_changed_by(instance: Model, field: str) -> str:
    """'bob (Tue 01 Dec 14:02 UTC)' from the audit, or 'Someone' if it has no row."""
    row = last_setting_change(instance, field)
    if row is None:
        return "Someone"
    return f"{row.actor} ({row.changed_at.astimezone(UTC):%a %d %b %H:%M} UTC)"
