"""What the drills share: timing every client call, the workers, and the exactly-once checks."""

import asyncio
import contextlib
import functools
import re
import time
from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from drill_workflows import STEPS, DrillWorkflow, SleepyWorkflow, expected_result, step

SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
COMPLETED = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
WF_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


def bounded(seconds: float):
    """Fails a drill that runs longer than `seconds` inside the event loop, so its fixtures
    still clean up (pytest-timeout, set in pytest.ini above every drill's bound, is the
    backstop that ends the whole run)."""
    def decorate(drill):
        @functools.wraps(drill)
        async def run(*args, **kwargs):
            return await asyncio.wait_for(drill(*args, **kwargs), seconds)
        return run
    return decorate


class Calls:
    """Every client call a drill's load makes: what, through which node, when, and how it ended."""

    def __init__(self) -> None:
        # (kind, node, started, ended, error or None, workflow id)
        self.records: list[tuple[str, int, float, float, BaseException | None, str]] = []

    async def call(self, kind: str, node: int, awaitable, wid: str = ""):
        t0 = time.monotonic()
        try:
            result = await awaitable
        except Exception as e:
            self.records.append((kind, node, t0, time.monotonic(), e, wid))
            raise
        self.records.append((kind, node, t0, time.monotonic(), None, wid))
        return result

    def failures(self) -> list[str]:
        wall = time.time() - time.monotonic()  # to print when, as the nodes' logs say it
        return [f"{kind} {wid} via node {node} at {time.strftime('%H:%M:%S', time.gmtime(wall + t0))} UTC, "
                f"failed after {t1 - t0:.2f} s: {type(e).__name__}: {e}"
                for kind, node, t0, t1, e, wid in self.records if e is not None]

    def longest_call(self, down=(), pinned=False, kinds=("start", "signal", "describe")) -> tuple[float, str]:
        """The longest single call of these kinds, among calls through a node that stayed up
        meanwhile (pinned=False) or through a node that was down for part of it (pinned=True):
        `down` holds (node, from, to) windows. A result call waits for the workflow, so it
        says nothing about availability."""
        def hit(node, t0, t1):
            return any(n == node and t0 < b and a < t1 for n, a, b in down)
        timed = [(t1 - t0, f"{kind} via node {node}") for kind, node, t0, t1, *_ in self.records
                 if kind in kinds and hit(node, t0, t1) == pinned]
        return max(timed, default=(0.0, "no such call"))

    def longest_gap(self, kinds=("start", "signal", "describe")) -> float:
        """The longest time between two successful calls finishing, while the load ran."""
        ends = sorted(t1 for kind, _, _, t1, e, _ in self.records if kind in kinds and e is None)
        return max((b - a for a, b in zip(ends, ends[1:])), default=0.0)

    def summary(self, down=()) -> str:
        """`longest unavailability` is the longest call through a node that stayed up: how long
        the fault itself (an election, a hand-over) held a client up."""
        secs, what = self.longest_call(down)
        pinned, pinned_what = self.longest_call(down, pinned=True)
        n = Counter(kind for kind, *_ in self.records)
        return (f"longest unavailability {secs:.2f} s ({what}); calls through a node while it was "
                f"down waited up to {pinned:.2f} s ({pinned_what}); longest gap between successful "
                f"calls {self.longest_gap():.2f} s; calls {dict(n)}, failed {len(self.failures())}")


@contextlib.asynccontextmanager
async def workers(clients: dict[int, Client], queue: str):
    """One worker per node, all polling the same task queue, each through its own node."""
    ws = [
        Worker(client, task_queue=queue, workflows=[DrillWorkflow, SleepyWorkflow], activities=[step],
               identity=f"drill-worker-via-node-{i}", max_concurrent_activities=20,
               max_concurrent_workflow_tasks=20)
        for i, client in clients.items()
    ]
    for w in ws:
        await asyncio.wait_for(w.__aenter__(), 60)
    try:
        yield ws
    finally:
        # Bounded: a worker whose node is down would otherwise retry its shutdown for long.
        for i, w in zip(clients, ws):
            try:
                await asyncio.wait_for(w.__aexit__(None, None, None), 30)
            except Exception as e:
                print(f"worker via node {i} did not shut down cleanly: {e!r}")


def history_problems(wid: str, events) -> list[str]:
    """What in one DrillWorkflow history breaks exactly-once: every activity scheduled once
    and completed once, one signal, one completion."""
    types = [e.event_type for e in events]
    scheduled = [e.event_id for e in events if e.event_type == SCHEDULED]
    completed = [e.activity_task_completed_event_attributes.scheduled_event_id
                 for e in events if e.event_type == COMPLETED]
    problems = []
    if len(scheduled) != STEPS or sorted(completed) != sorted(scheduled):
        problems.append(f"scheduled events {scheduled}, completions for {completed}")
    if types.count(SIGNALED) != 1:
        problems.append(f"{types.count(SIGNALED)} WorkflowExecutionSignaled")
    if types.count(WF_COMPLETED) != 1:
        problems.append(f"{types.count(WF_COMPLETED)} WorkflowExecutionCompleted")
    if problems:
        names = [EventType.Name(t).removeprefix("EVENT_TYPE_") for t in types]
        return [f"{wid}: {'; '.join(problems)}; history {names}"]
    return []


async def fetch_histories(client: Client, wids: list[str]) -> dict:
    """Each workflow's history events by id, or the exception fetching it raised."""
    histories = {}
    for wid in wids:
        try:
            histories[wid] = (await asyncio.wait_for(client.get_workflow_handle(wid).fetch_history(), 60)).events
        except Exception as e:
            histories[wid] = e
    return histories


async def exactly_once_problems(client: Client, wids: list[str], histories: dict | None = None) -> list[str]:
    histories = histories if histories is not None else await fetch_histories(client, wids)
    problems = []
    for wid in wids:
        events = histories.get(wid, LookupError("not fetched: its start never succeeded"))
        if isinstance(events, Exception):
            problems.append(f"{wid}: no history: {type(events).__name__}: {events}")
        else:
            problems += history_problems(wid, events)
    return problems


def _wall(event) -> float:
    return event.event_time.seconds + event.event_time.nanos / 1e9


def lifetimes(histories: dict) -> dict[str, tuple[float, float]]:
    """When (wall clock, as the server stamped the events) each workflow started and
    completed; inf for one that has not completed."""
    return {wid: (_wall(events[0]), next((_wall(e) for e in events if e.event_type == WF_COMPLETED), float("inf")))
            for wid, events in histories.items() if not isinstance(events, Exception)}


def at(lives: dict[str, tuple[float, float]], t: float) -> tuple[int, int]:
    """(completed, running) at wall-clock time t: a workflow whose completion the server
    recorded after t was still running at t, whatever a client had seen by then."""
    done = sum(1 for start, end in lives.values() if end <= t)
    running = sum(1 for start, end in lives.values() if start <= t < end)
    return done, running


async def runs_per_id(client: Client, prefix: str) -> Counter:
    """How many runs each workflow id with this prefix has, as visibility lists them."""
    async def listing():
        return Counter([wf.id async for wf in client.list_workflows(f"WorkflowId STARTS_WITH '{prefix}'")])
    return await asyncio.wait_for(listing(), 60)


async def outcome_problems(client: Client, prefix: str, wids: list[str], results: dict,
                           histories: dict | None = None) -> list[str]:
    """Everything wrong with these DrillWorkflows' outcomes (`results`: what each client's
    result call returned, or raised): a wrong or missing result, with what the workflow looks
    like now; an id without exactly one run; a history that breaks exactly-once."""
    problems = []
    for wid in wids:
        got = results.get(wid)
        if got != expected_result(wid, f"sig-{wid}"):
            status = (await asyncio.wait_for(client.get_workflow_handle(wid).describe(), 30)).status
            problems.append(f"{wid}: the client got {got!r}; the workflow is now {status.name}")
    runs = await runs_per_id(client, prefix)
    problems += [f"{wid}: {runs.get(wid, 0)} runs" for wid in wids if runs.get(wid, 0) != 1]
    return problems + await exactly_once_problems(client, wids, histories)


async def gather_or_report(client: Client, coros: dict, timeout: float) -> dict:
    """Runs coros ({workflow id: coroutine}) together: {id: result or exception}. If some have
    not finished after `timeout` seconds, fails with what each of those workflows looks like
    (status, pending activities, last events), instead of a bare TimeoutError."""
    tasks = {wid: asyncio.ensure_future(c) for wid, c in coros.items()}
    _, pending = await asyncio.wait(tasks.values(), timeout=timeout)
    if pending:
        for t in pending:
            t.cancel()
        stuck = [wid for wid, t in tasks.items() if t in pending]
        lines = []
        for wid in stuck[:10]:
            try:
                d = await asyncio.wait_for(client.get_workflow_handle(wid).describe(), 15)
                events = (await asyncio.wait_for(client.get_workflow_handle(wid).fetch_history(), 15)).events
                last = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events[-6:]]
                acts = [(a.activity_type.name, a.state, a.attempt) for a in d.raw_description.pending_activities]
                lines.append(f"{wid}: {d.status.name}, pending activities {acts}, last events {last}")
            except Exception as e:
                lines.append(f"{wid}: could not describe: {type(e).__name__}: {e}")
        raise AssertionError(f"{len(stuck)} of {len(tasks)} not finished after {timeout} s:\n" + "\n".join(lines))
    return {wid: (t.exception() or t.result()) for wid, t in tasks.items()}


def log_findings(cluster) -> str:
    """Panics, errors and warnings in any node's logs, one line per kind of message with how
    often it came: printed as evidence, not asserted."""
    lines = cluster.log_lines(r"panicked|\b(ERROR|WARN)\b")
    kinds = Counter()
    for line in lines:
        log, _, text = line.partition(": ")
        # Drop the timestamp and numbers (ports, terms, indexes) so alike messages count together.
        message = re.sub(r"\d+", "N", text.split("Z ", 1)[-1])[:160]
        kinds[message] += 1
    out = [f"{len(lines)} panic/ERROR/WARN lines in node logs"]
    out += [f"  {n}x {message}" for message, n in kinds.most_common(10)]
    return "\n".join(out)
