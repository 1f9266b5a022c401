// The offline API reference at /docs: renders the user API's own OpenAPI document
// (/openapi.json, served by the same process) as HTML. No network beyond this origin.

const $ = (sel) => document.querySelector(sel);

function el(tag, props = {}, ...children) {
  const { dataset, ...rest } = props;
  const node = Object.assign(document.createElement(tag), rest);
  if (dataset) Object.assign(node.dataset, dataset);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function refName(ref) {
  return ref.split("/").pop();
}

/** A compact, readable type for a schema: links to named schemas, enums, bounds. */
function typeOf(schema) {
  if (!schema) return el("span", { textContent: "any" });
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return el("a", { href: `#schema-${name}`, textContent: name });
  }
  const span = el("span");
  let type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "";
  if (schema.type === "array" || (Array.isArray(schema.type) && schema.type.includes("array"))) {
    span.append(`${type} of `, typeOf(schema.items));
  } else if (schema.oneOf || schema.anyOf) {
    (schema.oneOf || schema.anyOf).forEach((s, i) => span.append(i ? " | " : "", typeOf(s)));
  } else {
    span.append(type || "object");
  }
  const notes = [];
  if (schema.enum) notes.push(`one of ${schema.enum.map((v) => JSON.stringify(v)).join(", ")}`);
  if (schema.pattern) notes.push(`pattern ${schema.pattern}`);
  if (schema.format) notes.push(schema.format);
  if (schema.minLength !== undefined || schema.maxLength !== undefined) notes.push(`length ${schema.minLength ?? 0}–${schema.maxLength ?? "∞"}`);
  if (schema.minimum !== undefined || schema.maximum !== undefined) notes.push(`${schema.minimum ?? "−∞"} to ${schema.maximum ?? "∞"}`);
  if (schema.writeOnly) notes.push("write-only");
  if (notes.length) span.append(el("small", { textContent: ` (${notes.join("; ")})` }));
  return span;
}

function schemaTable(schema) {
  if (!schema || !schema.properties) return el("p", {}, "Type: ", typeOf(schema));
  const required = new Set(schema.required || []);
  const body = el("tbody");
  for (const [name, prop] of Object.entries(schema.properties)) {
    body.append(el("tr", {},
      el("th", { scope: "row" }, el("code", { textContent: name })),
      el("td", {}, typeOf(prop)),
      el("td", { textContent: required.has(name) ? "required" : "optional" }),
      el("td", { textContent: prop.description || "" })));
  }
  const head = el("thead", {}, el("tr", {}, ...["Field", "Type", "", "Meaning"].map((h) => el("th", { scope: "col", textContent: h }))));
  return el("div", { className: "table-wrap" }, el("table", {}, head, body));
}

function render(doc) {
  document.title = `${doc.info.title} ${doc.info.version} · reference`;
  $("#api-title").textContent = `${doc.info.title} ${doc.info.version}`;
  $("#api-intro").textContent = doc.info.description || "";
  const toc = el("ul");
  const ops = $("#ops");
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!["get", "put", "post", "delete", "patch"].includes(method)) continue;
      const id = `op-${method}-${path.replace(/[^A-Za-z0-9]+/g, "-")}`;
      toc.append(el("li", { dataset: { text: `${method} ${path} ${op.summary || ""}`.toLowerCase() } },
        el("a", { href: `#${id}` }, el("code", { textContent: `${method.toUpperCase()} ${path}` }), ` ${op.summary || ""}`)));
      const section = el("section", { id, className: "card op", dataset: { text: `${method} ${path} ${op.summary || ""}`.toLowerCase() } });
      section.setAttribute("aria-labelledby", `${id}-h`);
      section.append(el("h3", { id: `${id}-h` }, el("code", { textContent: `${method.toUpperCase()} ${path}` })));
      if (op.summary) section.append(el("p", { textContent: op.summary }));
      const security = op.security ?? doc.security;
      section.append(el("p", {}, el("strong", { textContent: "Auth: " }),
        security && security.length ? "Authorization: Bearer <token> (admin or user API token)" : "none"));
      const params = [...(item.parameters || []), ...(op.parameters || [])];
      if (params.length) {
        section.append(el("h4", { textContent: "Parameters" }));
        const body = el("tbody");
        for (const p of params) {
          body.append(el("tr", {}, el("th", { scope: "row" }, el("code", { textContent: p.name })),
            el("td", { textContent: p.in }), el("td", {}, typeOf(p.schema)), el("td", { textContent: p.required ? "required" : "optional" })));
        }
        section.append(el("div", { className: "table-wrap" }, el("table", {}, body)));
      }
      const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
      if (body) {
        section.append(el("h4", { textContent: `Request body (${op.requestBody.required ? "required" : "optional"})` }), el("p", {}, typeOf(body.schema)));
      }
      section.append(el("h4", { textContent: "Responses" }));
      const list = el("dl");
      for (const [status, response] of Object.entries(op.responses || {})) {
        const r = response.$ref ? doc.components.responses[refName(response.$ref)] : response;
        const schema = r.content && r.content["application/json"] && r.content["application/json"].schema;
        list.append(el("dt", {}, el("code", { textContent: status })), el("dd", {}, r.description || "", schema ? " → " : "", schema ? typeOf(schema) : null));
      }
      section.append(list);
      ops.append(section);
    }
  }
  $("#toc").append(toc);
  const schemas = $("#schemas");
  for (const [name, schema] of Object.entries((doc.components && doc.components.schemas) || {})) {
    const section = el("section", { id: `schema-${name}`, className: "card" }, el("h3", {}, el("code", { textContent: name })));
    if (schema.description) section.append(el("p", { textContent: schema.description }));
    section.append(schemaTable(schema));
    schemas.append(section);
  }
  $("#filter").addEventListener("input", (e) => {
    const q = e.target.value.trim().toLowerCase();
    for (const node of document.querySelectorAll("[data-text]")) node.hidden = Boolean(q) && !node.dataset.text.includes(q);
  });
}

fetch("/openapi.json")
  .then((r) => r.json())
  .then(render)
  .catch((e) => {
    $("#ops").textContent = `Could not load /openapi.json: ${e.message}`;
  });
