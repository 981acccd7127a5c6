"""The one error type the local control plane raises.

Its message is a single line that names the cause (a missing binary, a port in use, a
process that exited during start-up with the last line of its log), so a person reading a
failed test or a failed ``make demo`` knows what to fix without scrolling through logs.
"""


class ControlPlaneError(RuntimeError):
    """The local control plane could not be started or reached."""
