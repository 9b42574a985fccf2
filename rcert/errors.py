"""The one exception type users see."""


class RcertError(ValueError):
    """Bad input, a bad file or a bad option.

    The message is one line that says what is wrong and how to fix it. The CLI prints it
    as ``rcert: error: <message>`` and exits with status 2; the Python API raises it.
    """


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message, cut to ``limit`` characters, for a one-line error;
    the exception type's name when the message is empty."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:limit]
