/**
 * Test support: a describe block run on the CUDA backend through the CPU emulator of libcuda,
 * NVRTC and cuBLASLt. The backend opens before the block's tests and is disposed after them;
 * where g++ or nvcc is missing, the block is skipped and its title says why.
 */
import { afterAll, beforeAll, describe } from "vitest";
import { CudaBackend } from "../../runtime/cuda/backend.ts";
import { missingEmulatorTool, useEmulator } from "./emulator/build_emulator.ts";

export function emulatedSuite(title: string, body: (backend: () => CudaBackend) => void): void {
  const missing = missingEmulatorTool();
  let opened: CudaBackend | undefined;
  describe.skipIf(missing !== undefined)(`${title}${missing === undefined ? "" : ` — skipped: ${missing} is not on the PATH`}`, () => {
    beforeAll(() => {
      useEmulator();
      opened = CudaBackend.open();
    }, 120_000);
    afterAll(() => opened?.dispose());
    body(() => {
      if (opened === undefined) throw new Error("the emulated backend is not open");
      return opened;
    });
  });
}
