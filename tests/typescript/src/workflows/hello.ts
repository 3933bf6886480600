import { proxyActivities } from '@temporalio/workflow';
import type * as activities from '../activities/hello';

const { composeGreeting } = proxyActivities<typeof activities>({ startToCloseTimeout: '10 seconds' });

/** Guide: "Hello World" — a workflow that calls one activity. */
export async function helloActivity(name: string): Promise<string> {
  return await composeGreeting('Hello', name);
}

/** The smallest workflow: no activity, no timer. */
export async function helloWorkflow(name: string): Promise<string> {
  return `Hello, ${name}!`;
}
