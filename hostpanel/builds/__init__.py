"""Image builds from a Dockerfile: requested through the API, run by a host agent, streamed live."""
