"""Domain errors raised by services; the API maps them to HTTP statuses (annotator.core.rest)."""


class DomainError(Exception):
    status = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class InvalidInput(DomainError):
    """The request itself is wrong (400): the message says what to change."""


class Forbidden(DomainError):
    """The user's role in the project does not allow this action (403)."""

    status = 403


class Conflict(DomainError):
    """The object is not in a state that allows this action, or changed meanwhile (409)."""

    status = 409
