// Turns a failure caught in workflow code into plain data the test can assert on.
import { ActivityFailure, ApplicationFailure, CancelledFailure, ChildWorkflowFailure, TemporalFailure, TimeoutFailure } from '@temporalio/workflow';

export interface FailureDescription {
  name: string;
  message: string;
  retryState?: string;
  activityType?: string;
  timeoutType?: string;
  lastHeartbeatDetails?: unknown;
  type?: string | null;
  nonRetryable?: boolean | null;
  cause?: FailureDescription;
}

export function describeFailure(err: unknown): FailureDescription {
  if (!(err instanceof Error)) return { name: typeof err, message: String(err) };
  const d: FailureDescription = { name: err.name, message: err.message };
  if (err instanceof ActivityFailure) {
    d.retryState = err.retryState;
    d.activityType = err.activityType;
  }
  if (err instanceof ChildWorkflowFailure) d.retryState = err.retryState;
  if (err instanceof TimeoutFailure) {
    d.timeoutType = err.timeoutType;
    d.lastHeartbeatDetails = err.lastHeartbeatDetails;
  }
  if (err instanceof ApplicationFailure) {
    d.type = err.type;
    d.nonRetryable = err.nonRetryable;
  }
  if (err instanceof CancelledFailure) d.name = 'CancelledFailure';
  if (err instanceof TemporalFailure && err.cause) d.cause = describeFailure(err.cause);
  return d;
}
