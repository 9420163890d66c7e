"""Errors the runtime raises, and the process exit codes they map to."""

# Exit codes of `python -m deployments_app.runtime` (the deployment backends read them).
EXIT_OK = 0
EXIT_USAGE = 2  # bad command line (argparse's own code)
EXIT_REFUSED = (
    3  # the model needs code execution to load (pickle, untrusted skops types) and it was not allowed
)
EXIT_LOAD_FAILED = 4  # no supported model in the directory, a corrupt file, a missing library
EXIT_BIND_FAILED = 5  # the host/port could not be bound


class ModelLoadError(Exception):
    """The model could not be loaded: no supported file, corrupt file, missing library."""

    exit_code = EXIT_LOAD_FAILED


class ModelRefusedError(ModelLoadError):
    """Loading the model would execute arbitrary code and that was not allowed."""

    exit_code = EXIT_REFUSED


class InputError(Exception):
    """A request the model cannot take: bad JSON, wrong shape, wrong type, missing column.

    Answered with `status` (400 by default) and the message; never a server error.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status
