"""``python -m gateway``: serve, rules, keys, report, audit, handbacks, demo.

main          the argument parser and ``serve``, ``keys``, ``report``, ``audit``, ``demo``
rules         ``rules check|explain``; handbacks: ``handbacks list|eido``; report: formatting
demo, devsandbox  the demo transfer and the built-in Twilio sandbox for ``make run``
workers       ``serve --workers N``: N processes on one port under gunicorn
"""

from gateway.cli.main import main

__all__ = ["main"]
