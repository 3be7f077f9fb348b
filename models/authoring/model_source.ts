/**
 * A model file as `kiln check-model` reads it: a ts-morph project holding the file and what it
 * imports (so the type checker resolves which DSL class each `new` builds), and the vocabulary
 * the checks share: diagnostics with file:line, and which DSL layer a class is.
 */
import { relative } from "node:path";
import { Node, Project, SyntaxKind, type ClassDeclaration, type SourceFile, type Type } from "ts-morph";
import { packagePath } from "../../runtime/io/package_root.ts";

export type CheckRule = "prefix" | "forward" | "registration" | "tensor-parallel" | "checkpoint";

export interface Diagnostic {
  readonly file: string;
  readonly line: number;
  readonly rule: CheckRule;
  readonly message: string;
}

export function formatDiagnostic(d: Diagnostic, cwd: string = process.cwd()): string {
  return `${relative(cwd, d.file) || d.file}:${d.line}: [${d.rule}] ${d.message}`;
}

export function diagnosticAt(node: Node, rule: CheckRule, message: string): Diagnostic {
  return { file: node.getSourceFile().getFilePath(), line: node.getStartLineNumber(), rule, message };
}

/** The files and everything they import, type-checked together (one checker) with kiln's own compiler options. */
export function openModelSources(files: readonly string[]): { project: Project; sources: SourceFile[] } {
  const project = new Project({ tsConfigFilePath: packagePath("tsconfig.json"), skipAddingFilesFromTsConfig: true });
  const sources = files.map((f) => project.addSourceFileAtPath(f));
  // the registry too, where kiln's own models are registered (registration_check.ts)
  project.addSourceFileAtPathIfExists(packagePath("models", "registry.ts"));
  project.resolveSourceFileDependencies();
  return { project, sources };
}

/**
 * How a DSL class takes part in tensor parallelism: column layers shard their output, row layers
 * take a sharded input and reduce it; other modules (norms, attention, embeddings) neither.
 */
export type DslKind = "column" | "row" | "module";

const COLUMN = new Set(["ColumnParallelLinear", "MergedColumnParallelLinear", "QKVParallelLinear"]);
const ROW = new Set(["RowParallelLinear"]);

/** The class and its bases, nearest first. */
export function classChain(decl: ClassDeclaration): ClassDeclaration[] {
  const out: ClassDeclaration[] = [];
  for (let c: ClassDeclaration | undefined = decl; c !== undefined && !out.includes(c); c = c.getBaseClass()) out.push(c);
  return out;
}

const isDslFile = (c: ClassDeclaration): boolean => /[\\/]models[\\/]dsl[\\/]/.test(c.getSourceFile().getFilePath());

export function classOf(type: Type): ClassDeclaration | undefined {
  const decl = type.getNonNullableType().getSymbol()?.getDeclarations()[0];
  return decl !== undefined && Node.isClassDeclaration(decl) ? decl : undefined;
}

/** Extends the DSL's Module (a model's own module or one of the DSL's). */
export function isModuleClass(decl: ClassDeclaration): boolean {
  return classChain(decl).some((c) => c.getName() === "Module" && isDslFile(c));
}

/** The DSL layer a class is or extends (nearest DSL class in its chain), undefined for a non-module. */
export function dslKind(decl: ClassDeclaration): DslKind | undefined {
  if (!isModuleClass(decl)) return undefined;
  for (const c of classChain(decl)) {
    const name = c.getName() ?? "";
    if (!isDslFile(c)) continue;
    if (COLUMN.has(name)) return "column";
    if (ROW.has(name)) return "row";
  }
  return "module";
}

/** A class built with a checkpoint prefix of its own: its constructor passes something other than a literal to super(). */
export function isPrefixedClass(decl: ClassDeclaration): boolean {
  for (const ctor of decl.getConstructors()) {
    for (const call of ctor.getDescendants()) {
      if (!Node.isCallExpression(call) || call.getExpression().getKind() !== SyntaxKind.SuperKeyword) continue;
      const arg = call.getArguments()[0];
      return arg !== undefined && !Node.isStringLiteral(arg) && !Node.isNoSubstitutionTemplateLiteral(arg);
    }
  }
  // no constructor of its own: as its base class
  const base = decl.getBaseClass();
  return base !== undefined && !isDslFile(base) ? isPrefixedClass(base) : false;
}
