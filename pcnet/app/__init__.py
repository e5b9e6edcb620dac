"""The Application Server role: the system of record (ARCHITECTURE §1).

`service.make_app_service(config, reactor)` builds the role's MultiService from the pieces of
`pieces` (store, start gate, connection guard, listeners, timers) and what they serve: the
change bus and the cross-process watcher (`events`, `watch`), the service layer (`services`:
every write, the job service's decisions and charging among them, with the job path's cache in
`jobs`), the quota scheduler, the provider operations, health and metrics.
"""
