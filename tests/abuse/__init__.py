"""The abuse suite: attacks on sandboxes and servers (see conftest.py and docs/security.md)."""
