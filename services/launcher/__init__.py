"""``make run``: the whole platform on one machine, and the live view operations teams want.

Starts the broker (if it is not running), provisions topics, starts the reference gateway,
the router, escalation and notifier services and the simulator as child processes, waits
for their gRPC health, shows a live summary scraped from their /metrics, and on Ctrl-C,
SIGTERM or the end of the duration stops everything it started and prints a final report.
"""

__all__: list[str] = []
