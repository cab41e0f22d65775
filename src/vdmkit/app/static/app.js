// Shared helpers of the vdmkit pages: JSON calls that turn any error into a readable message, and the nav bar.
"use strict";

async function api(path, options = {}) {
  const init = { ...options, headers: { "Content-Type": "application/json", ...(options.headers || {}) } };
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new Error(`the server did not answer (${err.message}); is vdmkit serve still running?`);
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const message = data && data.error ? data.error : response.statusText;
    const error = new Error(`${message} (HTTP ${response.status})`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showError(element, err) {
  element.textContent = err ? (err.message || String(err)) : "";
  element.hidden = !err;
}

function nav(here) {
  const links = [["/", "Generate"], ["/gallery", "Gallery"], ["/eval", "Human evaluation"], ["/results", "Results"]];
  const bar = document.createElement("nav");
  const title = document.createElement("strong");
  title.textContent = "vdmkit";
  bar.append(title);
  for (const [href, text] of links) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    if (href === here) a.className = "here";
    bar.append(a);
  }
  document.body.prepend(bar);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

function fmt(x, digits) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

// what to tell a rater or analyst about the studies found: the broken ones' reasons (a study with one bad field
// was shown as "no study here: make one"), a study's missing videos (it is rated without their pairs: it was called
// one that "cannot be used" before 2026-12-07), or ``none`` when there are no studies at all
function studyProblems(data, none) {
  const broken = (data.problems || []).length ? `problems with the studies: ${data.problems.join(" | ")}` : "";
  if (!data.studies.length) return broken ? `no usable study here; ${broken}` : none;
  return broken;
}

// fills ``select`` with the studies and picks ``chosen`` (from the URL); a ``chosen`` that is not here picks none (an
// empty first option) and is named in ``data.missing``: the first study was picked silently before 2026-12-07
async function fillStudies(select, chosen) {
  const data = await api("/api/studies");
  select.replaceChildren();
  data.missing = chosen && !data.studies.some(s => s.name === chosen) ? chosen : null;
  if (data.missing) {
    const none = document.createElement("option");
    none.value = "";
    none.textContent = "(choose a study)";
    select.append(none);
  }
  for (const study of data.studies) {
    const option = document.createElement("option");
    option.value = study.name;
    option.textContent = `${study.name} (${study.pairs} pairs, ${study.votes} votes)`;
    select.append(option);
  }
  select.value = data.missing ? "" : (chosen || select.value);
  return data;
}

// what to say about a study named in the URL that this server does not have (the server's own 404 words)
function missingStudy(data) {
  const here = data.studies.map(s => s.name).join(", ") || "none";
  return `no study ${JSON.stringify(data.missing)} here; studies here: ${here}; choose one above`;
}
