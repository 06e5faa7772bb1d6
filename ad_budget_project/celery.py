"""The Celery application; broker from settings.CELERY_BROKER_URL (Redis by default)."""

import os
from typing import Any

from celery import Celery

from ad_budget_project.startup import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ad_budget_project.settings")

app = Celery("ad_budget_project")


@app.on_configure.connect
def _load_settings(sender: Celery, **kwargs: Any) -> None:
    """The worker and Beat read the settings while parsing their command line: a missing
    SECRET_KEY stops them with one line, as it does manage.py, not Click's traceback."""
    settings_or_exit()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
