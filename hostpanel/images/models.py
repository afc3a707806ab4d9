"""Models of hostpanel.images: none yet; the issue that builds this app adds them."""
