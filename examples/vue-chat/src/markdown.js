// The model's text is Markdown, never HTML: raw HTML in it is shown as text, and the rendered
// result is sanitised once more before it reaches v-html. Links open in a new tab without a
// referrer; images are never loaded (a remote image is a tracking pixel, or a way for an injected
// prompt to send the conversation to someone's server in its URL): they become links.
import { Marked } from "marked";
import DOMPurify from "dompurify";
import { ref } from "vue";

// Syntax highlighting (highlight.js, ~40 kB) is loaded with the first code block, not with the
// page; until it is there code is shown plain, then every block is rendered again once.
let highlighter = null;
let loading = null;
/** Changes when the highlighter arrives: renders that depend on it run again. */
export const highlighterReady = ref(false);

function highlight(text, language) {
  if (!highlighter) {
    loading ??= import("./highlight.js").then((module) => {
      highlighter = module.default;
      cache.clear();
      highlighterReady.value = true;
    });
    return null;
  }
  return highlighter.getLanguage(language) ? highlighter.highlight(text, { language, ignoreIllegals: true }).value : null;
}

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const marked = new Marked({
  renderer: {
    html: ({ text }) => escapeHtml(text),
    image: ({ href, text }) => `<a href="${escapeHtml(href)}" class="image-link">image: ${escapeHtml(text || href)}</a>`,
    code({ text, lang }) {
      const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
      const body = (language && highlight(text, language)) || escapeHtml(text);
      return (
        `<div class="code"><div class="code-head"><span>${escapeHtml(language || "text")}</span>` +
        `<button type="button" class="copy-code" data-copy-code>Copy code</button></div>` +
        `<pre><code class="hljs">${body}</code></pre></div>`
      );
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});
const PURIFY = { ADD_ATTR: ["target"], FORBID_TAGS: ["img", "svg", "math", "style", "form", "input"] };

// Each finished block's HTML is kept: while an answer streams only its last block is parsed
// and rendered again, and the blocks before it keep their DOM (and a selection made in them).
const cache = new Map();

function renderBlock(token, links, definitions) {
  const key = definitions ? `${definitions}\u0000${token.raw}` : token.raw; // [text][ref] resolves through them
  let html = cache.get(key);
  if (html === undefined) {
    html = DOMPurify.sanitize(marked.parser(Object.assign([token], { links })), PURIFY);
    if (cache.size > 500) cache.delete(cache.keys().next().value);
    cache.set(key, html);
  }
  return html;
}

/** The text as Markdown blocks of sanitised HTML, each `{ key, html }`. */
export function renderBlocks(text) {
  const tokens = marked.lexer(text);
  const definitions = Object.keys(tokens.links).length ? JSON.stringify(tokens.links) : "";
  const blocks = [];
  for (const token of tokens) {
    if (token.type === "space" && blocks.length) continue;
    blocks.push({ key: blocks.length, html: renderBlock(token, tokens.links, definitions) });
  }
  return blocks;
}
