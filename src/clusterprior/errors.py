"""Error types shared by the library and the CLI."""


class UserError(ValueError):
    """Bad input from the user (a file, a name, an option).

    The CLI prints its message as one line and exits with code 2; library callers
    get an ordinary ``ValueError`` subclass.
    """
