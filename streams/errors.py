"""One exception tree for the event backbone."""


class StreamsError(Exception):
    """Base of every error raised by the streams package."""
