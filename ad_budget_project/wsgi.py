import os

from django.core.wsgi import get_wsgi_application

from ad_budget_project.startup import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ad_budget_project.settings")

settings_or_exit()
application = get_wsgi_application()
