"""The host agent: everything that runs on a host (DESIGN.md Layout).

The Celery worker's tasks (tasks.py, build_tasks.py, edge_tasks.py), reconcile
(reconcile.py), health probes, tenant networks' overlays, tenant purges, the log
follower, the terminal relay and ``docker cp``, the edge's DNS server, and the
``manage.py hostagent`` command that starts them. The panel's apps never import
this package: they send it tasks by name (hosts/dispatch.py, builds/dispatch.py,
edge/dispatch.py).
"""
