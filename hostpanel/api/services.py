"""hostpanel.api has no business rules of its own: its views validate input and call the
services of the resource apps (tenants, deployments, hosts, images, secrets, volumes, usage)."""
