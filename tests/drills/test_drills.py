"""Failover drills: real `dura server start` processes, real signals, real gRPC.

Each drill asserts what must survive the fault (every workflow completes with its result,
exactly-once activities and signals, one run per id, no failed call where none may fail) and
prints, not asserts, how long clients were left waiting."""

import asyncio
import random
import time
import uuid
from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from drill_workflows import DrillWorkflow, SleepyWorkflow, expected_result, step_output
from dura_processes import wait_until
from support import (Calls, at, bounded, exactly_once_problems, fetch_histories, gather_or_report, lifetimes,
                     log_findings, outcome_problems, runs_per_id, workers)

NODES = (1, 2, 3)


def other(node: int, k: int = 1) -> int:
    return NODES[(NODES.index(node) + k) % len(NODES)]


async def clients_of(cluster, nodes=NODES):
    return {i: await cluster.client(i) for i in nodes}


def assert_one_run_each(runs: Counter, wids: list[str]) -> None:
    wrong = {wid: runs.get(wid, 0) for wid in wids if runs.get(wid, 0) != 1}
    assert not wrong, f"workflow ids without exactly one run (id: runs listed): {wrong}"


@bounded(300)
async def test_drill_sigkill_leader_under_load(cluster, say):
    """SIGKILL the busiest shard's leader every 10 s while 300 workflows run: none is lost,
    doubled or left half-done, and no activity or signal is applied twice."""
    n, t_begin = 300, time.monotonic()
    clients = await clients_of(cluster)
    queue, prefix = f"drill1-{uuid.uuid4()}", f"d1-{uuid.uuid4().hex[:8]}-"
    wids = [f"{prefix}{k}" for k in range(n)]
    calls, faults, done = Calls(), [], asyncio.Event()
    # What the load's clients have seen: a started workflow that has not been signalled yet
    # cannot have completed (it waits for the signal), so it is surely running; of many whose
    # result has not come back yet, some surely are too. (The histories settle it afterwards.)
    started, signalling, finished = set(), set(), set()

    def in_flight() -> bool:
        return bool(started - signalling) or len(started - finished) >= 20

    async def chaos():
        while True:
            try:
                await asyncio.wait_for(done.wait(), 10)
                return
            except asyncio.TimeoutError:
                pass
            victim = await cluster.busiest_shard_leader()
            # Kill only at a moment when the kill interrupts work: some workflows completed,
            # some running. (At the very end of the load there are none such: no more kills.)
            try:
                await wait_until("a completed and a running workflow",
                                 lambda: done.is_set() or (finished and in_flight()), timeout=120)
            except TimeoutError:
                return
            if done.is_set():
                return
            t0, wall = time.monotonic(), time.time()
            seen = (len(finished), len(started - signalling), len(started - finished))
            cluster.kill9(victim)
            await asyncio.sleep(2)
            await cluster.restart(victim)
            faults.append((victim, t0, time.monotonic(), wall, seen))

    # Starts through one node, the signal through the next, the result through the third;
    # the workers poll through all three. Five starts a second spread the load over several
    # kills, so the calls' timing shows what clients saw during each.
    async def drive(k: int, wid: str) -> str:
        node = NODES[k % 3]
        await asyncio.sleep(k / 5)
        await calls.call("start", node, clients[node].start_workflow(
            DrillWorkflow.run, wid, id=wid, task_queue=queue), wid)
        started.add(wid)
        await asyncio.sleep(random.uniform(0, 3))
        signalling.add(wid)
        await calls.call("signal", other(node), clients[other(node)].get_workflow_handle(wid).signal(
            DrillWorkflow.go, f"sig-{wid}"), wid)
        result = await clients[other(node, 2)].get_workflow_handle(wid).result()
        finished.add(wid)
        return result

    async with workers(clients, queue):
        chaos_task = asyncio.create_task(chaos())
        try:
            outcomes = await gather_or_report(clients[2], {wid: drive(k, wid) for k, wid in enumerate(wids)}, 240)
        finally:
            done.set()
            # The chaos task ends after its current kill's restart, so all nodes are up again.
            await asyncio.wait_for(chaos_task, 120)
        elapsed = time.monotonic() - t_begin
        histories = await fetch_histories(clients[2], wids)
        lives = lifetimes(histories)
        # At each kill, as the server's own event times tell: how many had completed, how
        # many were running (their completion came after the kill).
        at_kills = [at(lives, wall) for _, _, _, wall, _ in faults]
        say(f"{n} workflows, {len(faults)} SIGKILLs of the busiest shard leader "
            f"(node, s from kill to ready again) {[(v, round(b - a, 1)) for v, a, b, *_ in faults]}")
        say(f"at each kill (completed, running) per the histories {at_kills}; "
            f"per the clients (results seen, not yet signalled, no result yet) {[seen for *_, seen in faults]}")
        say(calls.summary(down=[(v, a, b) for v, a, b, *_ in faults]))
        say(f"took {elapsed:.1f} s\n{log_findings(cluster)}")
        for failure in calls.failures():
            say(f"failed call: {failure}")
        problems = await outcome_problems(clients[2], prefix, wids, outcomes, histories)
        assert not problems and not calls.failures(), (
            f"{len(problems)} problems:\n" + "\n".join(problems[:10])
            + "\nfailed calls:\n" + "\n".join(calls.failures()[:10]))
    assert faults, "the drill killed no leader"
    idle = [(k, c) for k, c in enumerate(at_kills) if not (c[0] >= 1 and c[1] >= 1)]
    assert not idle, f"kills (index, (completed, running)) that interrupted no work in flight: {idle}"


@bounded(180)
async def test_drill_sigstop_follower_catches_up_by_log(cluster, say):
    """A SIGSTOPped node leaves the other two serving; on SIGCONT it catches up from the log
    and serves reads of what happened while it was frozen."""
    status = await cluster.status(via=1)
    leads = Counter(g["leader"] for g in status["groups"])
    victim = min(NODES, key=lambda i: (leads[i], i))
    live = [i for i in NODES if i != victim]
    clients = await clients_of(cluster)
    queue, prefix = f"drill2-{uuid.uuid4()}", f"d2-{uuid.uuid4().hex[:8]}-"
    wids = [f"{prefix}{k}" for k in range(20)]
    calls = Calls()

    async def run_one(k: int, wid: str) -> str:
        a, b = live[k % 2], live[(k + 1) % 2]
        await calls.call("start", a, clients[a].start_workflow(DrillWorkflow.run, wid, id=wid, task_queue=queue), wid)
        await calls.call("signal", b, clients[b].get_workflow_handle(wid).signal(DrillWorkflow.go, f"sig-{wid}"), wid)
        return await calls.call("result", a, clients[a].get_workflow_handle(wid).result(), wid)

    async with workers(clients, queue):
        say(f"groups led per node {dict(leads)}; SIGSTOP node {victim} for at least 15 s")
        cluster.stop(victim)
        t_stop = time.monotonic()
        try:
            # The whole load runs, and its results come back, while the node is frozen.
            outcomes = await gather_or_report(clients[live[0]], {wid: run_one(k, wid) for k, wid in enumerate(wids)}, 120)
            results = [outcomes[wid] for wid in wids]
            t_load = time.monotonic() - t_stop
            behind = await cluster.status(via=live[0])
            # The fault lasts 15 s whatever the load took, so the node has a log to catch up on.
            await asyncio.sleep(max(0.0, 15 - (time.monotonic() - t_stop)))
        finally:
            cluster.cont(victim)
        t_cont = time.monotonic()
        say(f"{len(wids)} workflows started, signalled and finished through nodes {live} in {t_load:.1f} s "
            f"while node {victim} was stopped; {calls.summary()}")
        lag_then = {g["id"]: g["lag"].get(str(victim)) for g in behind["groups"]}
        say(f"node {victim}'s lag per group while stopped: {lag_then}")
        assert not calls.failures(), (f"calls through live nodes failed (status while stopped: {behind}):\n"
                                      + "\n".join(calls.failures()))
        assert results == [expected_result(wid, f"sig-{wid}") for wid in wids], results
        assert any(lag for lag in lag_then.values()), f"node {victim} never fell behind: {behind}"

        # Caught up: every group's leader sees no lag for it (or it leads the group).
        deadline, last = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            last = await cluster.status(via=live[0])
            if all(g["leader"] == victim or g["lag"].get(str(victim)) == 0 for g in last["groups"]):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"node {victim} not caught up 90 s after SIGCONT: {last}")
        say(f"node {victim} caught up {time.monotonic() - t_cont:.1f} s after SIGCONT")
        nodes = (await cluster.status(via=victim))["nodes"]
        assert len(nodes) == len(NODES) and all(n["reachable"] is True for n in nodes), (
            f"node {victim} does not reach every node: {nodes}")

        for wid in wids:
            d = await asyncio.wait_for(clients[victim].get_workflow_handle(wid).describe(), 30)
            assert d.status == WorkflowExecutionStatus.COMPLETED, (wid, d.status)
        problems = await exactly_once_problems(clients[victim], wids)
        assert not problems, "\n".join(problems)
        say(log_findings(cluster))


@bounded(240)
async def test_drill_whole_cluster_sigkill_restart(cluster, say):
    """SIGKILL all three nodes at once: finished workflows keep their results and histories,
    waiting and mid-flight ones carry on from where they were."""
    clients = await clients_of(cluster)
    queue, prefix = f"drill3-{uuid.uuid4()}", f"d3-{uuid.uuid4().hex[:8]}-"
    done_ids = [f"{prefix}done-{k}" for k in range(6)]
    waiting_ids = [f"{prefix}waiting-{k}" for k in range(6)]
    sleepy_ids = [f"{prefix}sleepy-{k}" for k in range(6)]
    midflight_ids = [f"{prefix}midflight-{k}" for k in range(6)]

    async def start(k: int, wid: str, *args, wf=DrillWorkflow.run):
        node = NODES[k % 3]
        return await clients[node].start_workflow(wf, args=[wid, *args], id=wid, task_queue=queue)

    async def has_event(wid: str, event_type) -> bool:
        history = await asyncio.wait_for(clients[1].get_workflow_handle(wid).fetch_history(), 30)
        return any(e.event_type == event_type for e in history.events)

    async def wait_for_event(wid: str, event_type, timeout=120):
        await wait_until(f"{wid}: {EventType.Name(event_type)}", lambda: has_event(wid, event_type), timeout, 0.5)

    async with workers(clients, queue):
        handles = [await start(k, wid) for k, wid in enumerate(done_ids)]
        for k, h in enumerate(handles):
            await clients[other(NODES[k % 3])].get_workflow_handle(h.id).signal(DrillWorkflow.go, f"sig-{h.id}")
        before = {h.id: await asyncio.wait_for(h.result(), 120) for h in handles}
        histories = {wid: await clients[1].get_workflow_handle(wid).fetch_history() for wid in done_ids}

        # Waiting for the signal with every activity and the timer behind them; then sleeping
        # on a 20 s timer (started last, so it is far from firing at the kill); then just
        # started. None can complete before the kill: each waits for a signal sent after it,
        # or for its timer.
        for k, wid in enumerate(waiting_ids):
            await start(k, wid)
        await asyncio.wait_for(asyncio.gather(
            *[wait_for_event(w, EventType.EVENT_TYPE_TIMER_FIRED) for w in waiting_ids]), 150)
        for k, wid in enumerate(sleepy_ids):
            await start(k, wid, 20.0, wf=SleepyWorkflow.run)
        await asyncio.wait_for(asyncio.gather(
            *[wait_for_event(w, EventType.EVENT_TYPE_TIMER_STARTED) for w in sleepy_ids]), 150)
        in_flight = waiting_ids + sleepy_ids + midflight_ids
        not_running = {}
        for w in waiting_ids + sleepy_ids:
            status = (await asyncio.wait_for(clients[2].get_workflow_handle(w).describe(), 30)).status
            if status != WorkflowExecutionStatus.RUNNING:
                not_running[w] = status
        assert not not_running, f"before the kill these should be running: {not_running}"
        for k, wid in enumerate(midflight_ids):
            await start(k, wid)

        t_kill, wall_kill = time.monotonic(), time.time()
        for i in NODES:
            cluster.kill9(i)
        await asyncio.wait_for(asyncio.gather(*[cluster.restart(i) for i in NODES]), 120)
        t_ready = time.monotonic()
        # Unavailability as a client sees it: from the kill to the first read that succeeds.
        await asyncio.wait_for(clients[1].get_workflow_handle(done_ids[0]).describe(), 60)
        say(f"all nodes SIGKILLed; ready again after {t_ready - t_kill:.1f} s; longest unavailability "
            f"{time.monotonic() - t_kill:.2f} s (kill to first successful describe)")

        for wid in done_ids:
            h = clients[2].get_workflow_handle(wid)
            assert (await h.describe()).status == WorkflowExecutionStatus.COMPLETED, wid
            assert await asyncio.wait_for(h.result(), 30) == before[wid], wid
            assert (await h.fetch_history()) == histories[wid], f"{wid}: history changed across the crash"

        for k, wid in enumerate(waiting_ids + midflight_ids):
            await clients[NODES[k % 3]].get_workflow_handle(wid).signal(DrillWorkflow.go, f"sig-{wid}")
        signalled = waiting_ids + midflight_ids
        outcomes = await gather_or_report(
            clients[3], {w: clients[3].get_workflow_handle(w).result() for w in signalled + sleepy_ids}, 180)
        results = [outcomes[w] for w in signalled + sleepy_ids]
        assert results[:len(signalled)] == [expected_result(w, f"sig-{w}") for w in signalled], results
        for w, r in zip(sleepy_ids, results[len(signalled):]):
            assert r == f"{step_output(f'{w}:0')} slept 20.0", (w, r)

        drill_ids = done_ids + waiting_ids + midflight_ids
        all_histories = await fetch_histories(clients[1], drill_ids + sleepy_ids)
        problems = await exactly_once_problems(clients[1], drill_ids, all_histories)
        assert not problems, "\n".join(problems)
        assert_one_run_each(await runs_per_id(clients[2], prefix), drill_ids + sleepy_ids)

        # The kill interrupted them all, as the server's own event times tell: each completed
        # after it, and each sleeper's timer fired after it.
        lives = lifetimes(all_histories)
        done_at_kill, running_at_kill = at({w: lives[w] for w in done_ids + in_flight}, wall_kill)
        assert (done_at_kill, running_at_kill) == (len(done_ids), len(in_flight)), (
            f"at the kill {done_at_kill} completed (want {len(done_ids)}), {running_at_kill} running "
            f"(want {len(in_flight)}): {lives}")
        fired_before = [w for w in sleepy_ids if any(
            e.event_type == EventType.EVENT_TYPE_TIMER_FIRED and e.event_time.ToMicroseconds() / 1e6 <= wall_kill
            for e in all_histories[w])]
        assert not fired_before, f"sleepers whose timer fired before the kill: {fired_before}"
        midflight_steps = Counter(sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                                      and e.event_time.ToMicroseconds() / 1e6 <= wall_kill for e in all_histories[w])
                                  for w in midflight_ids)
        say(f"just-started workflows by activities completed before the kill: {dict(midflight_steps)}")
        say(log_findings(cluster))


@bounded(240)
async def test_drill_rolling_sigterm_restart_under_load(cluster, say):
    """SIGTERM and restart each node in turn under continuous load: the graceful hand-over
    means no client call fails (the SDK's own retries allowed) and every workflow completes."""
    clients = await clients_of(cluster)
    queue, prefix = f"drill4-{uuid.uuid4()}", f"d4-{uuid.uuid4().hex[:8]}-"
    calls, wids, started, results, rolled = Calls(), [], set(), {}, asyncio.Event()
    t_begin = time.monotonic()

    async def one(k: int):
        wid, node = f"{prefix}{k}", NODES[k % 3]
        wids.append(wid)
        try:
            await calls.call("start", node, clients[node].start_workflow(
                DrillWorkflow.run, wid, id=wid, task_queue=queue), wid)
            started.add(wid)
            await calls.call("signal", other(node), clients[other(node)].get_workflow_handle(wid).signal(
                DrillWorkflow.go, f"sig-{wid}"), wid)
            results[wid] = await calls.call("result", other(node, 2), clients[other(node, 2)]
                                            .get_workflow_handle(wid).result(), wid)
        except Exception:
            pass  # recorded by calls; the assertion below lists it

    # Three workflows a second, each on its own: a call stuck on the node being restarted holds
    # up only its own workflow, so the gaps between successful calls show the cluster's.
    async def load():
        running = []
        while not rolled.is_set():
            running.append(asyncio.create_task(one(len(running))))
            await asyncio.sleep(1 / 3)
        await asyncio.gather(*running)

    def progressed(since: int, back: tuple[int, float] | None):
        """Three more results since `since`, a call through the node restarted last (`back`:
        node, when it was ready) has succeeded since, so the cluster serves the load again
        with it, and the load is still going (a started workflow without a result yet)."""
        served = back is None or any(node == back[0] and t0 >= back[1] and e is None
                                     for _, node, t0, _, e, _ in calls.records)
        return len(results) >= since + 3 and served and bool(started - results.keys())

    async with workers(clients, queue):
        loader = asyncio.create_task(load())
        rolls, down, walls, seen, back = [], [], [], 0, None
        try:
            for i in NODES:
                await wait_until(f"the load to progress before node {i}'s SIGTERM", lambda: progressed(seen, back), 60)
                t0 = time.monotonic()
                walls.append(time.time())
                exit_secs = await cluster.terminate(i)
                t1 = time.monotonic()
                await cluster.restart(i)
                down.append((i, t0, time.monotonic()))
                rolls.append((i, round(exit_secs, 1), round(time.monotonic() - t1, 1)))
                seen, back = len(results), (i, time.monotonic())
            await wait_until("the load to progress after the last restart", lambda: progressed(seen, back), 60)
        finally:
            rolled.set()
            await asyncio.wait_for(loader, 180)
        histories = await fetch_histories(clients[2], sorted(started))
        at_rolls = [at(lifetimes(histories), wall) for wall in walls]
        say(f"{len(wids)} workflows; rolled (node, SIGTERM to exit s, restart to ready s) {rolls}")
        say(f"at each SIGTERM (completed, running) per the histories {at_rolls}")
        say(f"{calls.summary(down)}; took {time.monotonic() - t_begin:.1f} s\n{log_findings(cluster)}")
        problems = await outcome_problems(clients[2], prefix, wids, results, histories)
        assert not problems and not calls.failures(), (
            f"{len(problems)} problems:\n" + "\n".join(problems[:10])
            + f"\n{len(calls.failures())} failed calls:\n" + "\n".join(calls.failures()[:20]))
        idle = [(i, c) for i, c in zip(NODES, at_rolls) if not (c[0] >= 1 and c[1] >= 1)]
        assert not idle, f"SIGTERMs (node, (completed, running)) with no work in flight: {idle}"
