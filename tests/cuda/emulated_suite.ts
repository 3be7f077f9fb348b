/**
 * Test support: a describe block run on the CUDA backend through the CPU emulator of libcuda,
 * NVRTC and cuBLASLt. The backend opens before the block's tests and is disposed after them;
 * where g++ or nvcc is missing, the block's tests fail and say what to install (useEmulator builds
 * the emulator, which requires both).
 */
import { afterAll, beforeAll, describe } from "vitest";
import { CudaBackend } from "../../runtime/backends/cuda/backend.ts";
import { useEmulator } from "./emulator/build_emulator.ts";

export function emulatedSuite(title: string, body: (backend: () => CudaBackend) => void): void {
  let opened: CudaBackend | undefined;
  describe(title, () => {
    beforeAll(() => {
      useEmulator();
      opened = CudaBackend.open();
    }, 300_000); // a cold start builds the emulator first
    afterAll(() => opened?.dispose());
    body(() => {
      if (opened === undefined) throw new Error("the emulated backend is not open");
      return opened;
    });
  });
}
