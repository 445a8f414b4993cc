"""Live events (DESIGN.md §9): what the stores publish (``entries``) and how every process
serves them to its open ``GET /v1/events`` streams (``hub``)."""
