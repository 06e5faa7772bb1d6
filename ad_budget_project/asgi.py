import os

from django.core.asgi import get_asgi_application

from ad_budget_project.startup import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ad_budget_project.settings")

settings_or_exit()
application = get_asgi_application()
