"""Several leekd nodes on one PostgreSQL: node rows and heartbeats, takeover, fencing, wake-ups.

The database is the one source of truth: a node is alive while its heartbeat (the
database's clock) is younger than the lease; a task belongs to the node and epoch written
on its row, and an outcome is written only where that still holds. Nothing here knows the
engine, the store or the server: ``app.py`` hands in callbacks (see ``member.Host``).
"""
