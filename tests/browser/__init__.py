"""Browser tests (a package, so that the live stack's ``scope="package"`` ends with it)."""
