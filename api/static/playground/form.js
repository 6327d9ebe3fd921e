// The form as a model input, and the API's field errors shown next to the fields they name.

// Sent only when changed from the model's default (the HTML's initial value), so the request and its
// snippets say only what was chosen.
const OPTIONAL = ["negative_prompt", "aspect_ratio", "num_images", "steps", "cfg", "output_format", "output_quality"];
const NUMBERS = new Set(["num_images", "steps", "cfg", "output_quality", "seed", "prompt_strength"]);
// The API accepts these aliases; its errors name what was sent, the form names the canonical field.
const ALIASES = { guidance_scale: "cfg", num_inference_steps: "steps" };

function isDefault(element) {
  if (element instanceof HTMLSelectElement) return element.selectedOptions[0]?.defaultSelected ?? true;
  return element.value === element.defaultValue;
}

// A number when the text is one; otherwise the text itself, for the API to name in its error.
function value(name, raw) {
  if (!NUMBERS.has(name)) return raw;
  const number = Number(raw);
  return raw.trim() !== "" && Number.isFinite(number) ? number : raw;
}

export function readInput(form) {
  const elements = form.elements;
  const input = { prompt: elements.prompt.value };
  for (const name of OPTIONAL) {
    const element = elements[name];
    if (!isDefault(element) && element.value.trim() !== "") input[name] = value(name, element.value);
  }
  if (!form.querySelector("#randomize").checked && elements.seed.value.trim() !== "") {
    input.seed = value("seed", elements.seed.value);
  }
  const image = elements.image.value.trim();
  if (image) {
    input.image = image;
    if (!isDefault(elements.prompt_strength)) input.prompt_strength = value("prompt_strength", elements.prompt_strength.value);
  }
  return input;
}

// Put a prediction's input back into the form (from the history).
export function fillForm(form, input) {
  form.reset();
  const canonical = { ...input };
  for (const [alias, name] of Object.entries(ALIASES)) {
    if (alias in canonical && !(name in canonical)) canonical[name] = canonical[alias];
  }
  for (const name of ["prompt", ...OPTIONAL, "image", "prompt_strength"]) {
    if (canonical[name] !== undefined && canonical[name] !== null) form.elements[name].value = String(canonical[name]);
  }
  const seeded = canonical.seed !== undefined && canonical.seed !== null;
  form.querySelector("#randomize").checked = !seeded;
  form.elements.seed.disabled = !seeded;
  form.elements.seed.value = seeded ? String(canonical.seed) : "";
}

export function clearErrors(root) {
  for (const field of root.querySelectorAll(".field.invalid")) field.classList.remove("invalid");
  for (const control of root.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  for (const message of root.querySelectorAll(".error")) message.textContent = "";
}

// Show each {field, message} next to its field ("input.steps" → the steps field); return the ones
// that name no field on the page.
export function showFieldErrors(root, errors) {
  const unplaced = [];
  for (const error of errors) {
    const first = String(error.field).replace(/^input\./, "").split(".")[0];
    const field = root.querySelector(`.field[data-field="${CSS.escape(ALIASES[first] || first)}"]`);
    if (!field) {
      unplaced.push(error);
      continue;
    }
    showError(field, error.message);
  }
  return unplaced;
}

export function showError(field, message) {
  field.classList.add("invalid");
  field.querySelector("[name]")?.setAttribute("aria-invalid", "true");
  // One line per message; the same message twice (two requests refused alike) shows once.
  const slot = field.querySelector(":scope > .error");
  const shown = slot.textContent ? slot.textContent.split("\n") : [];
  if (!shown.includes(message)) slot.textContent = [...shown, message].join("\n");
}
