"""Beat's scheduler: django-celery-beat's database scheduler, installing defaults once.

django-celery-beat's DatabaseScheduler writes settings.CELERY_BEAT_SCHEDULE over the
stored periodic tasks every time Beat starts, which would undo changes made in the
admin. This one only adds the tasks that are not stored yet: the admin is the source
of truth; delete a task there to get its default back at the next Beat start.
"""

from typing import Any

from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler


class DefaultsOnceScheduler(DatabaseScheduler):  # type: ignore[misc]  # django-celery-beat is untyped
    def update_from_dict(self, mapping: dict[str, Any]) -> None:
        stored = set(PeriodicTask.objects.filter(name__in=mapping).values_list("name", flat=True))
        super().update_from_dict({k: v for k, v in mapping.items() if k not in stored})
