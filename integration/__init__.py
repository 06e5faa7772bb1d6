"""Code for the systems outside: a platform's connector can copy it (docs/INTEGRATION.md)."""
