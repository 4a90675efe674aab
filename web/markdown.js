// Markdown to DOM for model output, which is untrusted. Nothing here parses HTML: elements are
// created one by one and every piece of text is a text node, so `<script>` or `<img onerror>`
// in an answer shows as those characters. Links keep only http(s) and mailto targets (anything
// else, `javascript:` first, shows as plain text) and open in a new tab without a referrer or
// an opener. Images are not loaded (they would leak the reader's address): they show as links.
//
// The subset: paragraphs, headings, emphasis, strikethrough, inline code, fenced code blocks
// (with a copy button), block quotes, ordered and unordered lists (nested), tables, rules,
// links and bare URLs. An unclosed code fence runs to the end, so a streamed answer renders
// well while it arrives.

import { h } from "./dom.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/;
// Linear: the optional closing `#`s are cut by closingHashes, not by backtracking.
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*))?$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:\s+(.*))?$/;
const TABLE_RULE = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;
const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

/** Renders `text` into a new <div class="markdown">. */
export function renderMarkdown(text) {
  const root = h("div", { class: "markdown" });
  root.appendChild(blocks(String(text).replace(/\r\n?/g, "\n").split("\n")));
  return root;
}

/** The href to use for `raw`, or null when it is not a safe link. */
export function safeHref(raw) {
  // Browsers ignore control characters and spaces inside a scheme ("java\tscript:").
  const compact = String(raw).replace(/[\u0000-\u0020\u007f-\u009f]/g, "");
  if (!compact) return null;
  try {
    const url = new URL(compact, window.location.href);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function blocks(lines) {
  const out = document.createDocumentFragment();
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      i++;
      continue;
    }
    let m;
    if ((m = FENCE.exec(line))) {
      i = codeBlock(lines, i, m, out);
    } else if ((m = HEADING.exec(line))) {
      const heading = h(`h${m[1].length}`);
      inline(withoutClosingHashes(m[2] || ""), heading);
      out.appendChild(heading);
      i++;
    } else if (RULE.test(line)) {
      out.appendChild(h("hr"));
      i++;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && lines[i].trim() !== "" && QUOTE.test(lines[i])) {
        inner.push(lines[i].replace(QUOTE, ""));
        i++;
      }
      const quote = h("blockquote");
      quote.appendChild(blocks(inner));
      out.appendChild(quote);
    } else if (ITEM.test(line)) {
      i = list(lines, i, out);
    } else if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
      i = table(lines, i, out);
    } else {
      i = paragraph(lines, i, out);
    }
  }
  return out;
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes("|") && next !== undefined && TABLE_RULE.test(next))
  );
}

function paragraph(lines, i, out) {
  const text = [lines[i]];
  i++;
  while (i < lines.length && lines[i].trim() !== "" && !startsBlock(lines[i], lines[i + 1])) {
    text.push(lines[i]);
    i++;
  }
  const p = h("p");
  text.forEach((line, n) => {
    if (n > 0) {
      // Two trailing spaces or a backslash: a hard break; otherwise a soft one (a space).
      if (/( {2,}|\\)$/.test(text[n - 1])) p.appendChild(h("br"));
      else p.appendChild(document.createTextNode(" "));
    }
    inline(line.trim().replace(/\\$/, ""), p);
  });
  out.appendChild(p);
  return i;
}

function codeBlock(lines, i, open, out) {
  const fence = open[1];
  const language = open[2] || "";
  const code = [];
  i++;
  while (i < lines.length) {
    const close = lines[i].trim();
    if (close.startsWith(fence[0].repeat(fence.length)) && /^([`~])\1*$/.test(close)) {
      i++;
      break;
    }
    code.push(lines[i]);
    i++;
  }
  const text = code.join("\n");
  const copy = h("button", { type: "button", class: "copy", "aria-label": "Copy code" }, "Copy");
  copy.addEventListener("click", () => copyText(text, copy));
  out.appendChild(
    h(
      "div",
      { class: "code-block" },
      h("div", { class: "code-head" }, h("span", {}, language || "code"), copy),
      h("pre", {}, h("code", { dataset: { language } }, text)),
    ),
  );
  return i;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

function indentOf(line) {
  return line.length - line.trimStart().length;
}

function list(lines, i, out) {
  const first = ITEM.exec(lines[i]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const element = h(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) element.setAttribute("start", parseInt(first[2], 10));
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    if (!m || m[1].length !== indent || /\d/.test(m[2]) !== ordered) break;
    const contentIndent = indent + m[2].length + 1;
    const body = [m[3] || ""];
    i++;
    while (i < lines.length) {
      const line = lines[i];
      if (line.trim() === "") {
        if (i + 1 < lines.length && indentOf(lines[i + 1]) >= contentIndent) {
          body.push("");
          i++;
          continue;
        }
        break;
      }
      const sub = ITEM.exec(line);
      if (sub && sub[1].length <= indent) break;
      if (indentOf(line) > indent) {
        body.push(line.slice(Math.min(indentOf(line), contentIndent)));
        i++;
        continue;
      }
      if (startsBlock(line, lines[i + 1])) break;
      body.push(line); // a lazy continuation of the item's paragraph
      i++;
    }
    const item = h("li");
    const inner = blocks(body);
    if (inner.childNodes.length === 1 && inner.firstChild.nodeName === "P") {
      item.append(...inner.firstChild.childNodes);
    } else {
      item.appendChild(inner);
    }
    element.appendChild(item);
    // Blank lines between items of one list.
    while (
      i + 1 < lines.length &&
      lines[i].trim() === "" &&
      ITEM.exec(lines[i + 1]) &&
      ITEM.exec(lines[i + 1])[1].length === indent
    ) {
      i++;
    }
  }
  out.appendChild(element);
  return i;
}

function cells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function table(lines, i, out) {
  const head = cells(lines[i]);
  const aligns = cells(lines[i + 1]).map((rule) =>
    rule.startsWith(":") && rule.endsWith(":") ? "center" : rule.endsWith(":") ? "right" : null,
  );
  const row = (values, tag) =>
    h(
      "tr",
      {},
      head.map((_, n) => {
        const cell = h(tag, aligns[n] ? { style: null, class: `align-${aligns[n]}` } : {});
        inline(values[n] || "", cell);
        return cell;
      }),
    );
  const body = h("tbody");
  i += 2;
  while (i < lines.length && lines[i].trim() !== "" && lines[i].includes("|")) {
    body.appendChild(row(cells(lines[i]), "td"));
    i++;
  }
  out.appendChild(
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, row(head, "th")), body)),
  );
  return i;
}

/** How far a link's label or target, or an emphasis, is looked for: model output is
 * untrusted, and an unbounded search would make a long line of `[` or `*` quadratic. */
const SCAN_LIMIT = 2000;

/** Inline Markdown of `text`, appended to `parent`. */
function inline(text, parent) {
  // Emphasis runs already known to have no closer after a position: not searched again.
  const unclosed = new Map();
  let plain = "";
  const flush = () => {
    if (plain) parent.appendChild(document.createTextNode(plain));
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && /[!-/:-@[-`{-~]/.test(text[i + 1] || "")) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      let n = 1;
      while (text[i + n] === "`") n++;
      const end = text.indexOf("`".repeat(n), i + n);
      if (end !== -1) {
        flush();
        parent.appendChild(h("code", {}, text.slice(i + n, end).replace(/^ (.+) $/s, "$1")));
        i = end + n;
        continue;
      }
      plain += "`".repeat(n);
      i += n;
      continue;
    }
    if (c === "[" || (c === "!" && text[i + 1] === "[")) {
      const link = parseLink(text, c === "!" ? i + 1 : i);
      if (link) {
        flush();
        parent.appendChild(renderLink(link, c === "!"));
        i = link.end;
        continue;
      }
    }
    if (c === "<") {
      const m = /^<((?:https?|mailto):[^\s<>]+)>/i.exec(text.slice(i));
      if (m) {
        flush();
        parent.appendChild(anchor(m[1], m[1]));
        i += m[0].length;
        continue;
      }
    }
    if ((c === "h" || c === "H") && (i === 0 || /[\s(]/.test(text[i - 1]))) {
      const m = /^https?:\/\/[^\s<>]*[^\s<>.,:;"')\]!?*_~]/i.exec(text.slice(i));
      if (m) {
        flush();
        parent.appendChild(anchor(m[0], m[0]));
        i += m[0].length;
        continue;
      }
    }
    if (c === "*" || c === "_" || (c === "~" && text[i + 1] === "~")) {
      const run = text[i + 1] === c ? c + c : c;
      const after = text[i + run.length];
      const intraword = c === "_" && i > 0 && /\w/.test(text[i - 1]);
      if (after && !/\s/.test(after) && !intraword) {
        const close = (unclosed.get(run) ?? Infinity) <= i ? -1 : closing(text, i + run.length, run);
        if (close === -1 && !unclosed.has(run)) unclosed.set(run, i);
        if (close !== -1) {
          flush();
          const tag = run === "~~" ? "del" : run.length === 2 ? "strong" : "em";
          const element = h(tag);
          inline(text.slice(i + run.length, close), element);
          parent.appendChild(element);
          i = close + run.length;
          continue;
        }
      }
      plain += run;
      i += run.length;
      continue;
    }
    plain += c;
    i++;
  }
  flush();
}

/** Where the emphasis opened by `run` closes, or -1. Code spans are skipped. */
function closing(text, from, run) {
  const c = run[0];
  const end = Math.min(text.length, from + SCAN_LIMIT);
  for (let j = from + 1; j < end; j++) {
    if (text[j] === "\\") {
      j++;
      continue;
    }
    if (text[j] === "`") {
      const end = text.indexOf("`", j + 1);
      if (end === -1) return -1;
      j = end;
      continue;
    }
    if (!text.startsWith(run, j) || /\s/.test(text[j - 1])) continue;
    if (run.length === 1 && text[j + 1] === c) {
      j++; // a double inside a single: part of a nested strong
      continue;
    }
    if (c === "_" && /\w/.test(text[j + run.length] || "")) continue;
    return j;
  }
  return -1;
}

/** `[label](target "title")` at `start` (the `[`), or null. */
function parseLink(text, start) {
  let depth = 0;
  let j = start;
  const labelEnd = Math.min(text.length, start + SCAN_LIMIT);
  for (; j < labelEnd; j++) {
    if (text[j] === "\\") j++;
    else if (text[j] === "[") depth++;
    else if (text[j] === "]" && --depth === 0) break;
  }
  if (j >= labelEnd || text[j + 1] !== "(") return null;
  const label = text.slice(start + 1, j);
  let k = j + 2;
  let parens = 1;
  const targetEnd = Math.min(text.length, k + SCAN_LIMIT);
  for (; k < targetEnd; k++) {
    if (text[k] === "\\") k++;
    else if (text[k] === "(") parens++;
    else if (text[k] === ")" && --parens === 0) break;
  }
  if (k >= targetEnd) return null;
  const inside = text.slice(j + 2, k).trim();
  const target = inside.replace(/\s+(["'(]).*$/s, "").replace(/^<(.*)>$/s, "$1");
  return { label, target, end: k + 1 };
}

function renderLink(link, image) {
  const href = safeHref(link.target);
  if (image) {
    const label = `[image${link.label ? `: ${link.label}` : ""}]`;
    return href ? anchor(href, label) : h("span", { class: "unsafe-link" }, label);
  }
  if (!href) {
    const span = h("span", { class: "unsafe-link", title: "link removed: only http(s) and mailto links are kept" });
    inline(link.label, span);
    return span;
  }
  const a = anchor(href, null);
  inline(link.label, a);
  return a;
}

function anchor(target, label) {
  const href = safeHref(target);
  if (!href) return h("span", { class: "unsafe-link" }, label || target);
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, label);
}

// A heading's text without its closing sequence (`## Title ##` → `Title`); a `#` glued to
// the text (`C#`) stays.
function withoutClosingHashes(text) {
  let end = text.trimEnd().length;
  let hashes = end;
  while (hashes > 0 && text[hashes - 1] === "#") hashes -= 1;
  if (hashes === 0) return "";
  if (hashes < end && (text[hashes - 1] === " " || text[hashes - 1] === "\t")) end = hashes;
  return text.slice(0, end).trimEnd();
}
