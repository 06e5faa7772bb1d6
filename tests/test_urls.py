"""The pages around the admin: the bare address, the admin's "View site", the icon."""

import re

from django.test import Client
from django.urls import reverse


def test_the_favicon_is_an_empty_answer_browsers_keep_for_a_day(client: Client) -> None:
    response = client.get("/favicon.ico")

    assert response.status_code == 204
    assert "max-age=86400" in response["Cache-Control"]


def test_the_bare_address_leads_to_the_dashboard(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_view_site_in_the_admin_leads_to_the_dashboard(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()
    link = re.search(r'<a href="([^"]*)">View site</a>', page)
    assert link is not None, "the admin shows no View site link"

    response = admin_client.get(link.group(1), follow=True)

    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("admin:index")
