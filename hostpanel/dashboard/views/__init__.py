"""Dashboard views, one module per page family; each resolves its tenant through ..access."""
