"""The policy editor console over real HTTP, without a browser."""
