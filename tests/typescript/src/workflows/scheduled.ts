import { workflowInfo } from '@temporalio/workflow';

/** The action a schedule starts. */
export async function scheduledReport(kind: string): Promise<string> {
  return `report ${kind} for ${workflowInfo().workflowId}`;
}
