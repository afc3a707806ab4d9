"""HostPanel's per-host container engine (no Django here; see DESIGN.md)."""
