"""The tenant-facing Docker Engine API: client certificates per member, a TLS door, and
endpoints that translate Docker requests into the panel's own services (never passed through)."""
