"""The one error type for bad user input, and the command-line wrapper that reports it."""
import sys


class InputError(Exception):
    """Bad input from the user: the message is one line naming the file, line or record."""


def run_cli(main, argv=None):
    """Run ``main(argv)`` with line-buffered output; an InputError becomes one line on stderr and
    exit status 2."""
    # Every line flushed as printed, as on a terminal: progress reaches a pipe, a log file or a
    # test waiting on it at once, not when a block buffer fills (no PYTHONUNBUFFERED needed).
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    try:
        return main(argv)
    except InputError as error:
        print("error: %s" % error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
