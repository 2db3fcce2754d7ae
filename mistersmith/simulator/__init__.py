"""The runtime stand-in and demo data (thread.py: SimulatorThread)."""
