"""`python -m benchmarks [--quick] [--json FILE] [--report FILE ...]`: set Django up as
manage.py does, then run the harness."""

import os


def run() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ad_budget_project.settings")
    import django

    from ad_budget_project.startup import settings_or_exit

    settings_or_exit()
    django.setup()
    from benchmarks.bench import main

    main()


if __name__ == "__main__":
    run()
