"""Deployable formats: one module (or package) per format."""
