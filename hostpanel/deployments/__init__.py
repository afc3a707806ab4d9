"""Apps, releases, replicas and their restart and health policies."""
