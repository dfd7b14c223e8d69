"""Telemetry of real pipelines from AWS: CloudWatch metrics, DMS task states, Glue job runs, CloudWatch Logs."""

from engine.telemetry.cloudwatch.fleet import Fleet, MetricQuery, StageBinding, load_fleet, parse_fleet
from engine.telemetry.cloudwatch.source import AwsClients, CloudWatchSource, aws_clients

__all__ = ["AwsClients", "CloudWatchSource", "Fleet", "MetricQuery", "StageBinding", "aws_clients", "load_fleet",
           "parse_fleet"]
