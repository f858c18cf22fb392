"""The error every data source raises for bad or missing training data (pygan.data.DataError)."""


class DataError(ValueError):
    """Bad or missing training data; the message is meant for the user as is."""
