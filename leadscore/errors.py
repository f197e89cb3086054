"""The one exception family users see. The CLI turns it into a one-line message and exit code 2."""


class LeadscoreError(Exception):
    """A problem the user can fix: bad config, missing file, unusable data.

    The message says what was expected, what was found and what to do.
    """

    exit_code = 2


class ConfigError(LeadscoreError):
    """The config file is missing, unreadable or invalid; the message names the key."""


class DataError(LeadscoreError):
    """An input file cannot be used as mapped by the config."""


class ModelNotFoundError(LeadscoreError):
    """No registered model (or alias) to score with."""


class ClusterError(LeadscoreError):
    """The Dask cluster could not finish a step: workers lost, or the work cancelled; the message says which."""
