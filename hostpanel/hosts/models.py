"""Models of hostpanel.hosts: none yet; the issue that builds this app adds them."""
