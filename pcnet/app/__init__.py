"""The Application Server role: the system of record (ARCHITECTURE §1).

`service.make_app_service(config, reactor)` builds the role's MultiService: the store, the job
service (decisions and charging), the quota scheduler, the HTTP and pcnet/1 listeners.
"""
