"""Saved views: a person's named states of the live pages (docs/live.md "Saved views")."""
