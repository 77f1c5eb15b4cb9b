// The strings of ES modules, for tests/test_i18n_catalogue.py: which catalogue keys the code
// uses, and which literals look like text a person reads (those belong in a catalogue).
// Usage: node tests/js/strings.mjs FILE.js… ; prints JSON (one entry per file).
// The rule is explained in tests/test_i18n_catalogue.py's docstring; it lives here because it
// needs the syntax tree (acorn, a devDependency).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(root, "package.json"));
const acorn = require("acorn");

// calls whose first argument is a catalogue key
const KEY_FUNCTIONS = new Set(["t", "has"]);
// properties and attributes whose value a person reads (any letter there is text)
const TEXT_SINKS = new Set(["text", "textContent", "innerText", "title", "placeholder", "alt",
  "aria-label", "label"]);
// where a string is a CSS class list, never text
const CLASS_SINKS = new Set(["className", "class"]);
// code words that look like prose by shape (a capital, then lower case) but are names the
// platform or a format defines: header names, GeoJSON types, error names, file formats
const ALLOWED = new Set(["Accept", "Accept-Language", "Authorization", "Bearer {}", "Content-Type",
  "Content-Disposition", "Last-Event-ID", "AbortError", "Feature", "FeatureCollection", "Point",
  "LineString", "Polygon", "MultiPolygon", "MultiPoint", "MultiLineString", "GeoJSON", "GeoPackage",
  "CSV", "HTTP {}", "Borderwatch",
  // the field page's own response headers (its service worker marks what came from the cache)
  "X-Borderwatch-From-Cache", "X-Borderwatch-Saved-At",
  // KeyboardEvent.key names, and the IANA time zone
  "Enter", "Escape", "ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Asia/Ho_Chi_Minh"]);

const NON_ASCII_LETTER = /[\p{L}--[A-Za-z]]/v;
const WORDS = /[A-Za-z]{2,}[,.;:!?]?\s+[A-Za-z]{2,}/; // two words separated by a space
const CAPITALISED = /(^|[^A-Za-z])[A-Z][a-z]{2,}/; // "Loading", "Sign out"

/** Why `text` (a literal, `{}` where a template has an expression) would be text a person
 * reads, or null. `sink`: it goes straight into a text property or attribute. */
export function prose(text, sink) {
  const s = text.trim();
  if (!/\p{L}/u.test(s) || ALLOWED.has(s)) return null;
  if (NON_ASCII_LETTER.test(s)) return "non-ASCII letters (Vietnamese text)";
  if (WORDS.test(s)) return "words separated by spaces";
  if (CAPITALISED.test(s)) return "a capitalised word";
  if (sink) return "a letter in a text property or attribute";
  return null;
}

function propName(node) {
  if (!node) return null;
  if (node.type === "Identifier") return node.name;
  if (node.type === "Literal") return String(node.value);
  return null;
}

function calleeName(node) {
  if (node.type === "Identifier") return node.name;
  if (node.type === "MemberExpression") return propName(node.property);
  return null;
}

function isConsole(node) {
  return node.type === "MemberExpression" && node.object.type === "Identifier" && node.object.name === "console";
}

function scan(file) {
  const source = readFileSync(file, "utf-8");
  const ast = acorn.parse(source, { ecmaVersion: "latest", sourceType: "module", locations: true });
  const out = { file, keys: [], prefixes: [], strings: [], findings: [] };

  // context: { skip, sink, cls, key } inherited by a node's literal children
  const visit = (node, parent, ctx) => {
    if (!node || typeof node.type !== "string") return;
    if (node.type === "Literal" && typeof node.value === "string") {
      out.strings.push(node.value);
      if (ctx.key) out.keys.push({ key: node.value, line: node.loc.start.line });
      else if (!ctx.skip && !ctx.cls) report(node.value, node, ctx.sink);
      return;
    }
    if (node.type === "TemplateLiteral") {
      const text = node.quasis.map((q) => q.value.cooked).join("{}");
      if (ctx.key) {
        out.prefixes.push({ prefix: node.quasis[0].value.cooked, line: node.loc.start.line });
      } else if (!ctx.skip && !ctx.cls) report(text, node, ctx.sink);
      for (const e of node.expressions) visit(e, node, { ...ctx, key: false, sink: false });
      return;
    }
    const child = (value, childCtx) => {
      if (Array.isArray(value)) value.forEach((v) => visit(v, node, childCtx));
      else if (value && typeof value.type === "string") visit(value, node, childCtx);
    };
    const plain = { skip: ctx.skip, sink: false, cls: false, key: false };
    switch (node.type) {
      case "ImportDeclaration":
      case "ExportAllDeclaration":
        return; // module paths
      case "ExportNamedDeclaration":
        child(node.declaration, plain);
        return;
      case "ExpressionStatement":
        if (node.directive) return; // "use strict"
        break;
      case "Property": {
        const name = node.computed ? null : propName(node.key);
        if (node.computed) child(node.key, plain);
        child(node.value, { ...plain, sink: TEXT_SINKS.has(name), cls: CLASS_SINKS.has(name) });
        return;
      }
      case "AssignmentExpression": {
        const name = node.left.type === "MemberExpression" && !node.left.computed ? propName(node.left.property) : null;
        child(node.left, plain);
        child(node.right, { ...plain, sink: TEXT_SINKS.has(name), cls: CLASS_SINKS.has(name) });
        return;
      }
      case "CallExpression": {
        const name = calleeName(node.callee);
        child(node.callee, plain);
        if (isConsole(node.callee)) {
          child(node.arguments, { ...plain, skip: true }); // for developers, not on the page
          return;
        }
        if (KEY_FUNCTIONS.has(name) && node.callee.type === "Identifier") {
          child(node.arguments[0], { ...plain, key: true });
          child(node.arguments.slice(1), plain);
          return;
        }
        if (name === "setAttribute" && node.arguments.length === 2) {
          const attr = node.arguments[0].type === "Literal" ? node.arguments[0].value : null;
          child(node.arguments[0], plain);
          child(node.arguments[1], { ...plain, sink: TEXT_SINKS.has(attr), cls: attr === "class" });
          return;
        }
        if (node.callee.type === "MemberExpression" && propName(node.callee.object.property) === "classList") {
          child(node.arguments, { ...plain, cls: true });
          return;
        }
        child(node.arguments, plain);
        return;
      }
      case "ConditionalExpression":
        child(node.test, plain);
        child([node.consequent, node.alternate], ctx); // either branch is the value
        return;
      case "LogicalExpression":
        child([node.left, node.right], ctx);
        return;
      case "BinaryExpression":
        if (node.operator === "+") {
          child([node.left, node.right], ctx);
          return;
        }
        break;
      default:
        break;
    }
    for (const [k, value] of Object.entries(node)) {
      if (k === "loc" || k === "start" || k === "end") continue;
      child(value, plain);
    }
  };

  function report(text, node, sink) {
    const why = prose(text, sink);
    if (why) out.findings.push({ line: node.loc.start.line, text, why });
  }

  visit(ast, null, { skip: false, sink: false, cls: false, key: false });
  return out;
}

console.log(JSON.stringify(process.argv.slice(2).map(scan)));
