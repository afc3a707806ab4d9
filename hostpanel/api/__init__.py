"""The REST API: DRF routers, authentication and the OpenAPI schema."""
