"""State operations: verification, metrics, snapshots, rebuild from events, retention (issue 5)."""
