"""audiodiag: learning per-frequency-bin temporal gains on audio with diagonal layers."""

__version__ = "0.1.0"
