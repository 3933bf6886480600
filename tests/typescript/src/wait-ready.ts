// Waits until a Temporal-compatible server answers DescribeNamespace.
//   node lib/wait-ready.js ADDRESS NAMESPACE TIMEOUT_SECONDS [SERVER_PID]
// Exits 0 when ready, 1 on timeout or when SERVER_PID has exited.
import { Connection } from '@temporalio/client';

async function main(): Promise<number> {
  const [address, namespace = 'default', timeoutArg = '90', pidArg] = process.argv.slice(2);
  const deadline = Date.now() + Number(timeoutArg) * 1000;
  const pid = pidArg ? Number(pidArg) : undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (pid !== undefined) {
      try {
        process.kill(pid, 0);
      } catch {
        console.error(`wait-ready: server process ${pid} exited during startup`);
        return 1;
      }
    }
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address, connectTimeout: 2000 });
      await connection.withDeadline(Date.now() + 5000, () => connection!.workflowService.describeNamespace({ namespace }));
      return 0;
    } catch (err) {
      lastError = err;
    } finally {
      await connection?.close().catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  console.error(`wait-ready: ${address} did not answer within ${timeoutArg}s; last error: ${lastError}`);
  return 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
