"""Endpoint modules: importing this package registers their routes."""
