#!/usr/bin/env node
// The installed `kiln` command: run the TypeScript CLI through tsx's loader.
import { register } from "tsx/esm/api";

register();
await import("../cli/kiln.ts");
