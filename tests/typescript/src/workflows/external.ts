import {
  CancellationScope,
  condition,
  defineSignal,
  getExternalWorkflowHandle,
  isCancellation,
  setHandler,
  startChild,
} from '@temporalio/workflow';

export const poke = defineSignal<[string]>('poke');

/** Waits for one `poke` signal and returns its argument. */
export async function waitForPoke(): Promise<string> {
  let poked: string | undefined;
  setHandler(poke, (value) => {
    poked = value;
  });
  await condition(() => poked !== undefined);
  return `poked with ${poked}`;
}

/** Waits until cancelled. */
export async function waitForever(): Promise<void> {
  await condition(() => false);
}

/** Signals another workflow (a SignalExternalWorkflowExecution command). */
export async function signalOther(targetId: string): Promise<string> {
  try {
    await getExternalWorkflowHandle(targetId).signal(poke, 'hi');
    return 'signalled';
  } catch (err) {
    return `failed: ${(err as Error).name}`;
  }
}

/** Asks another workflow, not a child, to cancel (RequestCancelExternalWorkflowExecution). */
export async function cancelOther(targetId: string): Promise<string> {
  await getExternalWorkflowHandle(targetId).cancel();
  return 'cancel requested';
}

/** Starts a child, then cancels it through its scope: the child's cancellation comes back. */
export async function cancelChild(childId: string): Promise<string> {
  const scope = new CancellationScope();
  const child = await scope.run(() => startChild(waitForever, { workflowId: childId }));
  scope.cancel();
  try {
    await child.result();
    return 'child finished';
  } catch (err) {
    return isCancellation(err) ? 'child cancelled' : `unexpected: ${err}`;
  }
}
