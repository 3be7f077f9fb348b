/**
 * Rule "prefix": every DSL module is constructed with the checkpoint prefix it lives under, and a
 * module built inside another module composes its prefix from its parent's (`this.join("name")`),
 * so parameter names come out as the checkpoint's dotted paths. A literal prefix is right only in
 * a root model class (one whose own prefix is ""), where "model.decoder" or "lm_head" start a path.
 */
import { Node, SyntaxKind, type NewExpression, type SourceFile } from "ts-morph";
import { classOf, diagnosticAt, isModuleClass, isPrefixedClass, type Diagnostic } from "./model_source.ts";

/** One `new SomeModule(prefix, ...)` in the file. */
export interface ConstructionSite {
  readonly node: NewExpression;
  readonly className: string;
  /** the dotted segments spelled out literally in the prefix argument ("self_attn"; "layers" of `layers.${i}`) */
  readonly segments: readonly string[];
}

function literalSegments(arg: Node | undefined): string[] {
  if (arg === undefined) return [];
  const texts: string[] = [];
  for (const n of [arg, ...arg.getDescendants()]) {
    if (Node.isStringLiteral(n) || Node.isNoSubstitutionTemplateLiteral(n)) texts.push(n.getLiteralText());
    else if (Node.isTemplateHead(n) || Node.isTemplateMiddle(n) || Node.isTemplateTail(n)) texts.push(n.getLiteralText());
  }
  return texts.flatMap((t) => t.split(".")).filter((s) => /^[A-Za-z_][\w]*$/.test(s));
}

export function moduleConstructions(source: SourceFile): ConstructionSite[] {
  const out: ConstructionSite[] = [];
  for (const node of source.getDescendantsOfKind(SyntaxKind.NewExpression)) {
    const cls = classOf(node.getType());
    if (cls === undefined || !isModuleClass(cls)) continue;
    out.push({ node, className: cls.getName() ?? node.getExpression().getText(), segments: literalSegments(node.getArguments()[0]) });
  }
  return out;
}

/** Built from the enclosing module's prefix: this.join(...), joinPrefix(...), or a template/identifier naming `prefix`. */
function composes(arg: Node): boolean {
  if (Node.isStringLiteral(arg) || Node.isNoSubstitutionTemplateLiteral(arg)) return false;
  if (Node.isTemplateExpression(arg)) return /\bprefix\b|this\.join\(/.test(arg.getTemplateSpans().map((s) => s.getExpression().getText()).join(" "));
  return true; // a call or a variable: this.join(...) and helpers taking the prefix; not decidable further statically
}

export function checkPrefixes(source: SourceFile): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const site of moduleConstructions(source)) {
    const arg = site.node.getArguments()[0];
    if (arg === undefined) {
      out.push(diagnosticAt(site.node, "prefix", `${site.className} is constructed without a checkpoint prefix`));
      continue;
    }
    if (!arg.getType().isString() && !arg.getType().isStringLiteral() && !arg.getType().isTemplateLiteral()) {
      out.push(diagnosticAt(site.node, "prefix", `${site.className}'s first argument (${arg.getText()}) is not a checkpoint prefix string`));
      continue;
    }
    if ((Node.isStringLiteral(arg) || Node.isNoSubstitutionTemplateLiteral(arg)) && arg.getLiteralText() === "") {
      out.push(diagnosticAt(site.node, "prefix", `${site.className} is constructed with an empty prefix: its parameters would be named as top-level tensors`));
      continue;
    }
    const owner = site.node.getFirstAncestorByKind(SyntaxKind.ClassDeclaration);
    if (owner !== undefined && isModuleClass(owner) && isPrefixedClass(owner) && !composes(arg)) {
      out.push(
        diagnosticAt(
          site.node,
          "prefix",
          `${site.className}'s prefix ${arg.getText()} is a literal inside ${owner.getName() ?? "a module"}, which lives under its own prefix: ` +
            `it does not compose into the checkpoint's names (use this.join(${arg.getText()}))`,
        ),
      );
    }
  }
  return out;
}
