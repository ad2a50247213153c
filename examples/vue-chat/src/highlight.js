// highlight.js with the languages a chat answer most often uses; loaded on demand (markdown.js).
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import css from "highlight.js/lib/languages/css";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import ruby from "highlight.js/lib/languages/ruby";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";

for (const [name, language] of Object.entries({ bash, css, javascript, json, python, ruby, sql, typescript, xml, yaml })) {
  hljs.registerLanguage(name, language);
}
for (const [alias, name] of Object.entries({ js: "javascript", ts: "typescript", py: "python", rb: "ruby", sh: "bash", shell: "bash", html: "xml", yml: "yaml" })) {
  hljs.registerAliases(alias, { languageName: name });
}

export default hljs;
