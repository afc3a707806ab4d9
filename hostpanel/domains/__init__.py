"""Hostnames of apps: the automatic ``<app>-<tenant>.<apps domain>`` and verified custom domains."""
