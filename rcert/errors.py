"""The one exception type users see."""


class RcertError(ValueError):
    """Bad input, a bad file or a bad option.

    The message is one line that says what is wrong and how to fix it. The CLI prints it
    as ``rcert: error: <message>`` and exits with status 2; the Python API raises it.
    """


def with_hint(hint: str) -> str:
    """``"; hint"``, the tail of a one-line message that says how to fix it, or ``""``."""
    return f"; {hint}" if hint else ""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message, cut to ``limit`` characters, for a one-line error;
    the exception type's name when the message is empty."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:limit]


_ALLOCATION = ("can't allocate memory", "out of memory", "unable to allocate",
               "not enough memory", "defaultcpuallocator")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: ``MemoryError`` (numpy's included), torch's
    ``OutOfMemoryError``, or a RuntimeError of an allocator. Such an error is the machine's
    limit, never the user's model or input, so code that turns a model's errors into
    messages lets it through."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(
        word in str(exc).lower() for word in _ALLOCATION)
