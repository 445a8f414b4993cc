"""911 ⇄ 988 interoperability gateway."""

__version__ = "0.1.0"
