// The request the form would send, as curl, Python (Replicate's client) and the farm CLI.
// The key is never written into a snippet: they read it from FARM_API_KEY.

import { MODEL } from "./api.js";

function shellQuote(text) {
  return `'${String(text).replaceAll("'", `'\\''`)}'`;
}

function shellWord(text) {
  return /^[\w.:/@%+=,-]+$/.test(String(text)) ? String(text) : shellQuote(text);
}

// JSON strings are valid Python string literals; the other JSON values differ only in spelling.
function pythonValue(value) {
  if (value === null) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  return JSON.stringify(value);
}

export function curlSnippet(origin, input) {
  return [
    'curl -H "Authorization: Bearer $FARM_API_KEY" \\',
    `  -d ${shellQuote(JSON.stringify({ input }))} \\`,
    `  ${origin}/v1/models/${MODEL}/predictions`,
  ].join("\n");
}

export function pythonSnippet(origin, input) {
  const fields = Object.entries(input).map(([name, value]) => `        ${JSON.stringify(name)}: ${pythonValue(value)},`);
  return [
    "import os",
    "",
    "import replicate",
    "",
    `client = replicate.Client(api_token=os.environ["FARM_API_KEY"], base_url=${JSON.stringify(origin)})`,
    "prediction = client.predictions.create(",
    `    model=${JSON.stringify(MODEL)},`,
    "    input={",
    ...fields,
    "    },",
    ")",
    "prediction.wait()",
    "print(prediction.status, prediction.output)",
  ].join("\n");
}

// The CLI's options are named after the inputs: steps → --steps, aspect_ratio → --aspect-ratio.
export function cliSnippet(origin, input) {
  const { prompt, ...options } = input;
  const flags = Object.entries(options).map(([name, value]) => `--${name.replaceAll("_", "-")} ${shellWord(value)}`);
  return ["# with FARM_API_KEY set to your key", [`FARM_URL=${origin} farm predict`, shellQuote(prompt), ...flags].join(" ")].join("\n");
}

export const SNIPPETS = { curl: curlSnippet, python: pythonSnippet, cli: cliSnippet };
