"""Artifact stores: a folder (the default) and S3-compatible servers."""
