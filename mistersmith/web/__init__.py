"""The admin's look and access, shared by every app's views (see docs/architecture.md)."""
