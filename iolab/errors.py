"""iolab's own exceptions. The CLI maps each to ``error: …`` and a named exit code.

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

# Named exit codes, as uvicorn names STARTUP_FAILURE = 3.
EXIT_OK = 0
EXIT_FAILURE = 1  # a gate failed (iolab compare --fail-if) or a run finished with failures
EXIT_USAGE = 2  # bad input: options, files, schema
EXIT_STARTUP_FAILURE = 3  # the target server could not be started or never became ready
EXIT_SERVER_DIED = 4  # the target died while being measured
EXIT_LIMITS = 5  # --require-limits and a limit could not be applied; or the --net-* network could not be built;
#                 or the tracer named by --explain-method cannot run
EXIT_DRIVER = 6  # the load driver failed or is missing
EXIT_NOTHING_MEASURED = 7  # a scenario had no successful request: its figures do not exist (results kept)
EXIT_DEGRADED = 8  # a scenario measured, but too many responses failed or were not 2xx (results kept)
EXIT_OUTPUT = 9  # the results could not be written where asked; they were kept in a fallback file
EXIT_AGENT = 10  # iolab run --agent: the agent could not be reached, refused the token or the PID
EXIT_STDOUT = 11  # standard output is closed or failed (a full disk, a pipe closed by its reader)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class IolabError(Exception):
    """Base of every error the user can cause or fix. ``str(err)`` is the one-line message."""

    exit_code = EXIT_USAGE


class UsageError(IolabError):
    exit_code = EXIT_USAGE


class ResultsFileError(IolabError):
    """A results file is missing, unreadable, not JSON, or of an unknown schema."""

    exit_code = EXIT_USAGE


class ServerStartError(IolabError):
    exit_code = EXIT_STARTUP_FAILURE


class ServerDiedError(IolabError):
    exit_code = EXIT_SERVER_DIED


class LimitsError(IolabError):
    exit_code = EXIT_LIMITS


class NetworkError(IolabError):
    """The network asked for (--net-*, measure/netns.py) could not be built: no root, no iproute2 …"""

    exit_code = EXIT_LIMITS


class TracerError(IolabError):
    """--explain-method bpftrace|strace, and that tracer cannot run here (not installed, not root)."""

    exit_code = EXIT_LIMITS


class DriverError(IolabError):
    exit_code = EXIT_DRIVER


class AgentError(IolabError):
    """``iolab run --agent``: the agent is unreachable, refused the token (401) or the PID (403)."""

    exit_code = EXIT_AGENT


class GateFailedError(IolabError):
    """A ``--fail-if`` gate held (or could not be judged: a scenario or metric missing in the new run)."""

    exit_code = EXIT_FAILURE


class NothingMeasuredError(IolabError):
    """A scenario ended with no successful request: there is no latency or rate to report."""

    exit_code = EXIT_NOTHING_MEASURED


class DegradedRunError(IolabError):
    """A scenario's share of failed or non-2xx responses is above the documented limit."""

    exit_code = EXIT_DEGRADED


class OutputWriteError(IolabError):
    """Writing a result where the user asked failed at the end; the message names the fallback file."""

    exit_code = EXIT_OUTPUT


class StdoutError(IolabError):
    """Writing to standard output failed: ``iolab report r.json > /dev/full``, a closed pipe or fd 1.

    Whatever went to files (the results, ``-o``, ``--html``) was written before; only the text meant for
    standard output is lost.
    """

    exit_code = EXIT_STDOUT


class Interrupted(IolabError):
    """Ctrl-C or SIGTERM: every command stops cleanly (servers killed, cgroups removed) and keeps its results."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted; partial results were kept") -> None:
        super().__init__(message)


class ProbeError(IolabError):
    """Reading /proc failed for a reason other than a thread or process that exited."""

    exit_code = EXIT_USAGE


class NoSuchProcess(ProbeError):
    """The process being probed does not exist (any more)."""


class AccessDenied(ProbeError):
    """/proc of the process is not readable by us (another user's process)."""
