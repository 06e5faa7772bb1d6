"""What every entry point (manage.py, the Celery worker and Beat, WSGI, ASGI) does first:
load the settings, and answer a configuration error with one line on stderr and exit
status 1, not a traceback. The settings only read the environment, so any error while
loading them is a configuration error, and the person starting the process needs the
message, not the stack."""

import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def settings_or_exit() -> None:
    """Load the settings now; on a configuration error print `error: ...` and exit 1."""
    try:
        _ = settings.SECRET_KEY  # the first access imports and checks the settings module
    except ImproperlyConfigured as error:
        sys.exit(f"error: {error}")
    except ValueError as error:  # a value django-environ could not cast, e.g. CONN_MAX_AGE=abc
        sys.exit(f"error: a setting in the environment or .env has an invalid value: {error}")
