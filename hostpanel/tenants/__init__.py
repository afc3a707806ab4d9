"""Tenants, their members and roles, API tokens and cgroup quotas."""
