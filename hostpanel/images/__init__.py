"""Image records, builds and the registry endpoints."""
