"""Models of hostpanel.deployments: none yet; the issue that builds this app adds them."""
