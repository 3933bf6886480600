import { ApplicationFailure, continueAsNew, executeChild, startChild, workflowInfo } from '@temporalio/workflow';
import { describeFailure, FailureDescription } from './failures';

export async function childGreeting(name: string): Promise<string> {
  const info = workflowInfo();
  return `child ${name} of ${info.parent?.workflowId ?? 'nobody'}`;
}

export async function failingChild(): Promise<never> {
  throw ApplicationFailure.nonRetryable('child says no', 'ChildError');
}

/** Guide: child workflows — runs one child to completion and returns its result. */
export async function parentWorkflow(childId: string): Promise<string> {
  return await executeChild(childGreeting, { workflowId: childId, args: ['Ada'] });
}

/** Two children at once via startChild. */
export async function parentOfTwo(prefix: string): Promise<string[]> {
  const a = await startChild(childGreeting, { workflowId: `${prefix}-a`, args: ['a'] });
  const b = await startChild(childGreeting, { workflowId: `${prefix}-b`, args: ['b'] });
  return await Promise.all([a.result(), b.result()]);
}

export async function parentOfFailingChild(childId: string): Promise<FailureDescription> {
  try {
    await executeChild(failingChild, { workflowId: childId });
    return { name: 'none', message: 'child did not fail' };
  } catch (err) {
    return describeFailure(err);
  }
}

/** Guide: continue-as-new — each run adds its iteration; the last run returns the list. */
export async function looping(iteration: number, last: number, seen: number[]): Promise<{ seen: number[]; runs: number }> {
  const now = [...seen, iteration];
  if (iteration < last) {
    await continueAsNew<typeof looping>(iteration + 1, last, now);
  }
  return { seen: now, runs: now.length };
}
