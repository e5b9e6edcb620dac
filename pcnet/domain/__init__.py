"""The domain rules of print management, free of I/O.

Cost models, filters, the job decision, ledger arithmetic, quota schedules and secret hashing
live here so that the Application Server and the Site Server (offline) share one implementation.
Nothing in this package touches the network, the disk, the clock or the reactor: callers pass
in what the rules need (the time included).
"""
