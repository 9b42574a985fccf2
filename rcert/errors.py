"""The one exception type users see."""


class RcertError(ValueError):
    """Bad input, a bad file or a bad option.

    The message is one line that says what is wrong and how to fix it. The CLI prints it
    as ``rcert: error: <message>`` and exits with status 2; the Python API raises it.
    """
