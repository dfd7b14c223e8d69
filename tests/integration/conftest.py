"""Fixtures of the integration tests: a moto server over HTTP for the AWS adapters (see aws_rig)."""

from .aws_rig import aws, moto_url  # noqa: F401 (fixtures for every test here)
