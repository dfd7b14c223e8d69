"""The one exception tree of selfheal. Adapters translate foreign errors into these at the edge."""


class SelfhealError(Exception):
    """Base of every error selfheal raises on purpose."""


class ConfigError(SelfhealError):
    """Settings or a config file are invalid."""


class ScenarioError(SelfhealError):
    """A scenario file is invalid; the message names the offending field."""


class StoreError(SelfhealError):
    """The store could not be opened, migrated, read or written."""


class UnknownPipelineError(SelfhealError):
    """A pipeline id that the fleet does not have."""


class UnknownActionError(SelfhealError):
    """An action name that the catalog does not have."""
