/**
 * Rules on what a module's forward computes:
 *
 *  - "forward": it is built from DSL tensor ops, which trace into the graph. A loop over modules
 *    (`for (const layer of this.layers)`, or an index loop that only indexes module arrays) builds
 *    the graph layer by layer and is fine; any other loop, or a typed array built in forward,
 *    computes values in JavaScript at trace time, outside the graph the backends run.
 *  - "tensor-parallel": a column-parallel layer's output is sharded across ranks; feeding it to
 *    another column-parallel layer (which expects the whole input) without a RowParallelLinear in
 *    between is wrong at tensor-parallel size > 1, though it runs at size 1. The sharding is
 *    followed through variables, destructuring, tensor methods and DSL modules (norms, attention).
 */
import { Node, SyntaxKind, type ClassDeclaration, type Identifier, type MethodDeclaration, type SourceFile, type Type } from "ts-morph";
import { classOf, diagnosticAt, dslKind, isModuleClass, type Diagnostic } from "./model_source.ts";

type Sharding = "sharded" | "replicated";
const joinSharding = (xs: readonly Sharding[]): Sharding => (xs.includes("sharded") ? "sharded" : "replicated");

const TYPED_ARRAYS = /^(?:Float32Array|Float64Array|Uint16Array|Int32Array|Uint8Array|Int8Array|Uint32Array|Int16Array)$/;

/** A module, or a type parameter / interface whose members include forward (DecoderStack's `L extends DecoderLayer`). */
function isModuleLike(t: Type | undefined): boolean {
  if (t === undefined) return false;
  const nn = t.getNonNullableType();
  const cls = classOf(nn);
  if (cls !== undefined) return isModuleClass(cls);
  const probe = nn.isTypeParameter() ? (nn.getConstraint() ?? nn) : nn;
  return probe.getProperty("forward") !== undefined;
}

function elementType(t: Type): Type | undefined {
  return t.getNonNullableType().getArrayElementType() ?? t.getNonNullableType().getTupleElements()[0];
}

/** The forward-like methods of the file's module classes: forward*, and methods returning a Tensor. */
export function forwardMethods(source: SourceFile): MethodDeclaration[] {
  return source
    .getClasses()
    .filter(isModuleClass)
    .flatMap((c: ClassDeclaration) => c.getMethods())
    .filter((m) => m.getName().startsWith("forward") || /\bTensor\b/.test(m.getReturnType().getText(m)));
}

function checkLoops(method: MethodDeclaration): Diagnostic[] {
  const out: Diagnostic[] = [];
  const where = `${method.getParentIfKind(SyntaxKind.ClassDeclaration)?.getName() ?? ""}.${method.getName()}`;
  for (const loop of method.getDescendants()) {
    if (Node.isForOfStatement(loop)) {
      let iterated = loop.getExpression();
      // `for (const [i, layer] of this.layers.entries())`
      if (Node.isCallExpression(iterated) && /\.entries$/.test(iterated.getExpression().getText())) {
        const callee = iterated.getExpression();
        if (Node.isPropertyAccessExpression(callee)) iterated = callee.getExpression();
      }
      if (!isModuleLike(elementType(iterated.getType()))) {
        out.push(diagnosticAt(loop, "forward", `${where} loops over ${iterated.getText()} (not modules): values computed in JavaScript at trace time, outside the graph; use tensor ops`));
      }
    } else if (Node.isForStatement(loop)) {
      const accesses = loop.getStatement().getDescendantsOfKind(SyntaxKind.ElementAccessExpression);
      const overModules = accesses.length > 0 && accesses.every((a) => isModuleLike(elementType(a.getExpression().getType())));
      if (!overModules) out.push(diagnosticAt(loop, "forward", `${where} has a numeric for loop that computes values in JavaScript at trace time, outside the graph; use tensor ops (a loop over layers is fine)`));
    } else if (Node.isWhileStatement(loop) || Node.isDoStatement(loop) || Node.isForInStatement(loop)) {
      out.push(diagnosticAt(loop, "forward", `${where} has a ${loop.getKindName()} computing in JavaScript at trace time; use tensor ops`));
    } else if (Node.isNewExpression(loop) && TYPED_ARRAYS.test(loop.getExpression().getText())) {
      out.push(diagnosticAt(loop, "forward", `${where} builds a ${loop.getExpression().getText()} of tensor data in JavaScript; use tensor ops`));
    }
  }
  return out;
}

/** Follows where a value came from, to tell a column-parallel layer's sharded output from a whole one. */
class ShardingTracer {
  private readonly visiting = new Set<Node>();
  constructor(private readonly method: MethodDeclaration) {}

  of(node: Node): Sharding {
    if (this.visiting.has(node)) return "replicated";
    this.visiting.add(node);
    try {
      return this.compute(node);
    } finally {
      this.visiting.delete(node);
    }
  }

  private compute(node: Node): Sharding {
    if (Node.isParenthesizedExpression(node) || Node.isNonNullExpression(node) || Node.isAsExpression(node)) return this.of(node.getExpression());
    if (Node.isElementAccessExpression(node)) return this.of(node.getExpression());
    if (Node.isConditionalExpression(node)) return joinSharding([this.of(node.getWhenTrue()), this.of(node.getWhenFalse())]);
    if (Node.isArrowFunction(node)) {
      const body = node.getBody();
      if (Node.isBlock(body)) return joinSharding(body.getDescendantsOfKind(SyntaxKind.ReturnStatement).map((r) => r.getExpression()).filter((e) => e !== undefined).map((e) => this.of(e)));
      return this.of(body);
    }
    if (Node.isCallExpression(node)) {
      const callee = node.getExpression();
      const args = node.getArguments().map((a) => this.of(a));
      if (!Node.isPropertyAccessExpression(callee)) return joinSharding(args);
      const recv = callee.getExpression();
      if (Node.isThisExpression(recv)) return joinSharding(args); // this.scoped(...), this.use(...)
      const cls = classOf(recv.getType());
      if (cls === undefined) return joinSharding([this.of(recv), ...args]); // tensor methods, rotary.apply
      const kind = dslKind(cls);
      switch (kind) {
        case "column":
          return "sharded";
        case "row":
          return "replicated";
        case "module":
          // a DSL module (norm, attention) keeps its input's sharding; a model's own module returns whole
          // hidden states (its own forward is checked on its own)
          return /[\\/]models[\\/]dsl[\\/]/.test(cls.getSourceFile().getFilePath()) ? joinSharding(args) : "replicated";
        case undefined:
          return joinSharding([this.of(recv), ...args]); // a class that is not a module
      }
    }
    if (Node.isIdentifier(node)) return this.ofIdentifier(node);
    return "replicated";
  }

  private ofIdentifier(id: Identifier): Sharding {
    const decl = id.getSymbol()?.getDeclarations()[0];
    if (decl === undefined || Node.isParameterDeclaration(decl)) return "replicated";
    const sources: Node[] = [];
    if (Node.isVariableDeclaration(decl)) {
      const init = decl.getInitializer();
      if (init) sources.push(init);
    } else if (Node.isBindingElement(decl)) {
      const holder = decl.getFirstAncestorByKind(SyntaxKind.VariableDeclaration);
      const init = holder?.getInitializer();
      if (init) sources.push(init);
    }
    // later assignments to a `let` in this method
    for (const bin of this.method.getDescendantsOfKind(SyntaxKind.BinaryExpression)) {
      if (bin.getOperatorToken().getKind() !== SyntaxKind.EqualsToken) continue;
      const left = bin.getLeft();
      const targets = Node.isArrayLiteralExpression(left) ? left.getElements() : [left];
      if (targets.some((t) => Node.isIdentifier(t) && t.getSymbol() === id.getSymbol())) sources.push(bin.getRight());
    }
    return joinSharding(sources.map((s) => this.of(s)));
  }
}

function checkTensorParallel(method: MethodDeclaration): Diagnostic[] {
  const out: Diagnostic[] = [];
  const tracer = new ShardingTracer(method);
  for (const call of method.getDescendantsOfKind(SyntaxKind.CallExpression)) {
    const callee = call.getExpression();
    if (!Node.isPropertyAccessExpression(callee) || !/^forward/.test(callee.getName())) continue;
    const cls = classOf(callee.getExpression().getType());
    if (cls === undefined || dslKind(cls) !== "column") continue;
    const input = call.getArguments()[0];
    if (input !== undefined && tracer.of(input) === "sharded") {
      out.push(
        diagnosticAt(
          call,
          "tensor-parallel",
          `${callee.getExpression().getText()} (${cls.getName() ?? "column-parallel"}) takes ${input.getText()}, which is a column-parallel layer's sharded output, ` +
            `with no RowParallelLinear in between: each rank would see only its slice of the input`,
        ),
      );
    }
  }
  return out;
}

export function checkForwards(source: SourceFile): Diagnostic[] {
  return forwardMethods(source).flatMap((m) => [...checkLoops(m), ...checkTensorParallel(m)]);
}
