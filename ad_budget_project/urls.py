from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_control
from django.views.generic import RedirectView

from ads.api import api


@cache_control(max_age=24 * 60 * 60, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page: answer "no icon" (204), cached for a
    day, instead of a 404 logged each time."""
    return HttpResponse(status=204)


urlpatterns = [
    # The admin's front page is the dashboard; the admin's "View site" link (its
    # site_url, "/") and anyone typing the bare address land there.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
]

handler400 = "ads.api.errors.bad_request"
