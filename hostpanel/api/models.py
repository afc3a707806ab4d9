"""hostpanel.api has no models: API tokens live in hostpanel.tenants (they belong to a tenant)."""
