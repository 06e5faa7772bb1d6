from datetime import UTC, datetime

# A fixed "now" for tests: Friday 2026-11-27 12:00 UTC.
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
