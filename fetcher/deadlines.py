"""One timer for thousands of deadlines of the same length.

asyncio.timeout() costs a timer handle per use: at tens of thousands of fetches a second,
creating and cancelling those showed up as the largest single cost of a fetch under uvloop.
Every fetch in a run gets the same --timeout (and the same --connect-timeout), so deadlines
expire in the order they were set: a FIFO queue swept by a single timer does the same job.

    clock = Deadlines(10.0)
    deadline = clock.start()          # for the current task
    try:
        await work()
    except asyncio.CancelledError:
        if clock.expired(deadline):   # our deadline, not someone else's cancel
            ...                       # treat as a timeout
        raise
    finally:
        clock.stop(deadline)
"""

from __future__ import annotations

import asyncio
from collections import deque


class Deadline:
    __slots__ = ("when", "task", "fired")

    def __init__(self, when: float, task: asyncio.Task[object] | None) -> None:
        self.when = when
        self.task = task  # None once stopped: the queue holds no finished task alive
        self.fired = False


class Deadlines:
    """Cancels each started task `seconds` after start() unless stop() came first."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._queue: deque[Deadline] = deque()
        self._stopped = 0  # entries still queued whose deadline was stopped
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> Deadline:
        loop = asyncio.get_running_loop()
        when = loop.time() + self.seconds
        if self._queue and when < self._queue[-1].when:
            when = self._queue[-1].when  # keep the queue ordered if the clock stepped back
        deadline = Deadline(when, asyncio.current_task())
        self._queue.append(deadline)
        if self._timer is None:
            self._timer = loop.call_at(when, self._sweep)
        return deadline

    def stop(self, deadline: Deadline) -> None:
        """The work finished (or failed) in time: forget the deadline."""
        if deadline.task is None:
            return
        deadline.task = None
        self._stopped += 1
        # Compact when stopped entries outnumber live ones, so the queue stays about as long
        # as the number of tasks in flight however fast they finish.
        if self._stopped > 64 and self._stopped * 2 > len(self._queue):
            self._queue = deque(d for d in self._queue if d.task is not None)
            self._stopped = 0

    @staticmethod
    def expired(deadline: Deadline) -> bool:
        """True if the CancelledError the task is handling came from this deadline; the task's
        cancel request is then withdrawn so the caller can carry on and report a timeout."""
        if not deadline.fired:
            return False
        task = deadline.task or asyncio.current_task()
        return task is None or task.uncancel() == 0

    def _sweep(self) -> None:
        self._timer = None
        queue = self._queue
        loop = asyncio.get_running_loop()
        now = loop.time()
        while queue and queue[0].when <= now:
            deadline = queue.popleft()
            if deadline.task is None:
                self._stopped -= 1
                continue
            deadline.fired = True
            deadline.task.cancel()
        while queue and queue[0].task is None:  # do not wake up for stopped deadlines
            queue.popleft()
            self._stopped -= 1
        if queue:
            self._timer = loop.call_at(queue[0].when, self._sweep)
