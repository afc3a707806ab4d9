"""Business rules of hostpanel.tenants: plain, typed functions that take the acting user/tenant.

Views, serializers, tasks and consumers stay thin and call these (DESIGN.md).
Empty until the issue that builds this app.
"""
