/**
 * Rule "registration": every model class in a file (a concrete module class built from
 * `ModelArgs`) is registered under a Hugging Face architecture name, so `config.json`'s
 * `architectures` reaches it: by `registerModel("Name", Class | "path:Class")` in the file (a
 * plugin), or by `r.register("Name", Class)` in models/registry.ts (kiln's own models).
 */
import { Node, SyntaxKind, type ClassDeclaration, type Project, type SourceFile } from "ts-morph";
import { packagePath } from "../../runtime/io/package_root.ts";
import { classOf, diagnosticAt, isModuleClass, type Diagnostic } from "./model_source.ts";

/** A registration found in the file or the registry: HF name → class name. */
export interface Registration {
  readonly arch: string;
  readonly className: string;
}

/**
 * Concrete module classes the registry can instantiate: `new Class({ config, ctx })`, a constructor
 * whose one required parameter is ModelArgs (a class needing more, such as the generic decoder
 * the registry's fallback subclasses, is not registered by name).
 */
export function modelClasses(source: SourceFile): ClassDeclaration[] {
  return source.getClasses().filter((c) => {
    if (c.isAbstract() || !isModuleClass(c)) return false;
    const [first, ...rest] = c.getConstructors()[0]?.getParameters() ?? [];
    return first !== undefined && /\bModelArgs\b/.test(first.getType().getText(first)) && rest.every((p) => p.isOptional());
  });
}

function registrationsIn(file: SourceFile, wanted: readonly ClassDeclaration[]): Registration[] {
  const out: Registration[] = [];
  for (const call of file.getDescendantsOfKind(SyntaxKind.CallExpression)) {
    const callee = call.getExpression().getText();
    if (!/(?:^|\.)(?:registerModel|register)$/.test(callee)) continue;
    const [name, model] = call.getArguments();
    if (name === undefined || model === undefined || !Node.isStringLiteral(name)) continue;
    const arch = name.getLiteralText();
    if (Node.isStringLiteral(model) || Node.isNoSubstitutionTemplateLiteral(model)) {
      // a lazy "module-path:ExportName" spec
      const exported = model.getLiteralText().split(":").pop() ?? "";
      if (wanted.some((c) => c.getName() === exported)) out.push({ arch, className: exported });
      continue;
    }
    const cls = classOf(model.getType());
    if (cls !== undefined && wanted.includes(cls)) out.push({ arch, className: cls.getName() ?? "" });
  }
  return out;
}

export function findRegistrations(project: Project, source: SourceFile): Registration[] {
  const wanted = modelClasses(source);
  const registry = project.getSourceFile(packagePath("models", "registry.ts"));
  const files = registry === undefined || registry === source ? [source] : [source, registry];
  return files.flatMap((f) => registrationsIn(f, wanted));
}

export function checkRegistration(project: Project, source: SourceFile): Diagnostic[] {
  const registered = new Set(findRegistrations(project, source).map((r) => r.className));
  return modelClasses(source)
    .filter((c) => !registered.has(c.getName() ?? ""))
    .map((c) =>
      diagnosticAt(
        c,
        "registration",
        `model class ${c.getName() ?? "(anonymous)"} is not registered under a Hugging Face architecture name: ` +
          `call registerModel("<HF architecture>", ${c.getName() ?? "Class"}) from a plugin's register(), or add it to models/registry.ts`,
      ),
    );
}
