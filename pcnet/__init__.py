"""pcnet: open-source print management on Twisted.

The package holds the three roles (Application Server in `pcnet.app`, Print Provider in
`pcnet.provider`, Site Server in `pcnet.site`) and what they share: the pure domain rules
(`pcnet.domain`), storage (`pcnet.store`), the pcnet/1 line protocol and TLS (`pcnet.net`), the
web interfaces (`pcnet.web`) and spool file analysis (`pcnet.spool`).
"""

__version__ = "0.1.0"
