"""The Print Provider: runs on a CUPS print server, intercepts each job through the pcnet CUPS
backend (`pcnet.provider.backend`), asks its server what to do with it and prints, denies or holds
it. `pcnet.provider.cupsadmin` installs the backend and wraps queues.
"""
