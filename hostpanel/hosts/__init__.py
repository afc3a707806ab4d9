"""Hosts, heartbeats, capacity, the scheduler and the reconcile tasks."""
