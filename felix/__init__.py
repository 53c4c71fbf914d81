"""Felix: a per-host Calico v1 network policy agent."""

__version__ = "0.1.0"
