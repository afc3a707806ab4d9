"""The edge proxy: hostnames -> replicas (routing table), the agent's DNS answers, Caddy's config."""
