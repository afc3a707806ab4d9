"""Models of hostpanel.tenants: none yet; the issue that builds this app adds them."""
