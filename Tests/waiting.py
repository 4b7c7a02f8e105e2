"""The one wait of the Python suites (Tests/Interop, Tests/Integration, Tests/Deployments: pytest
puts Tests/ on sys.path when it loads Tests/conftest.py). A test waits for the event itself (a log
line, a metric, a state, a process exit, a port that answers), never for a duration, and never
asserts one. The timeout only guards against a hang, so it is generous: a wait ends as soon as its
event happens."""
import time

HANG_GUARD = 90


def wait_for(what, condition, timeout=HANG_GUARD, *, ignoring=(), detail=None, every=0.05):
    """Polls `condition` until it returns something true, and returns that. Exceptions of the
    types in `ignoring` count as "not yet" (others end the wait at once: a condition raises to say
    its event can no longer happen). Fails naming `what`, the last ignored error and `detail()`
    (a log, say) if the event has not happened within `timeout`. `every` is only how often to look."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = condition()
        except ignoring as e:
            value, last = None, e
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out waiting for {what}" + (f" (last error: {last!r})" if last is not None else "")
            if detail is not None:
                message += "\n" + str(detail())
            raise AssertionError(message)
        time.sleep(every)
