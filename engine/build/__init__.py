"""Building images from a Dockerfile: parser front end, context, layer cache and the builder."""
