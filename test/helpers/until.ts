// Waiting in tests for something another process or instance does a moment later: a bounded
// poll, so that a hang fails with what was awaited instead of stalling the run.

export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000, pollMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
