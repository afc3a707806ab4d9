"""Models of hostpanel.api: none yet; the issue that builds this app adds them."""
