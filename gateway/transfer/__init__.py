"""Warm transfers 911 → 988 center or local clinicians (DESIGN.md §3) and their dispositions.

states        the state machine as data; models: the transfer as stored and shown
store         the transfer's record in Redis; service: decide, bridge, dial, follow callbacks
dispositions  a connected transfer's outcome, recorded once by the destination's org
"""
