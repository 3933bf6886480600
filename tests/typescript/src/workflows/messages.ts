import { ApplicationFailure, condition, defineQuery, defineSignal, defineUpdate, setHandler } from '@temporalio/workflow';

export const incrementSignal = defineSignal<[number]>('increment');
export const finishSignal = defineSignal('finish');
export const countQuery = defineQuery<number>('count');
export const historyQuery = defineQuery<number[], [number]>('lastAdded');
export const addUpdate = defineUpdate<number, [number]>('add');

/**
 * Guide: signals, queries and updates on one workflow.
 * - signal `increment(n)` adds n; signal `finish` lets the workflow complete
 * - query `count` returns the total; query `lastAdded(k)` the last k amounts
 * - update `add(n)` adds n and returns the new total; its validator rejects n <= 0
 */
export async function counter(): Promise<number> {
  let total = 0;
  let finished = false;
  const added: number[] = [];
  setHandler(incrementSignal, (n) => {
    total += n;
    added.push(n);
  });
  setHandler(finishSignal, () => {
    finished = true;
  });
  setHandler(countQuery, () => total);
  setHandler(historyQuery, (k) => added.slice(-k));
  setHandler(
    addUpdate,
    (n) => {
      total += n;
      added.push(n);
      return total;
    },
    {
      validator: (n) => {
        if (!(n > 0)) throw ApplicationFailure.nonRetryable(`amount must be positive, got ${n}`, 'InvalidAmount');
      },
    },
  );
  await condition(() => finished);
  return total;
}
