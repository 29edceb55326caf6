// Drives Debian's Chromium (headless, through playwright-core) for tests/browser.rs, which
// starts the servers and judges the outcome; this script only reports what the browser did.
//
//   node driver.mjs '<json>'   with {chromium, allowed_page, refused_page, server, repo, text,
//                                    timeout_ms}
//
// Prints one JSON object on stdout: for each page, what the page returned, every request the
// browser made for it (Playwright's log), and what the DevTools protocol saw of each exchange
// with our server: the status and the raw response headers as they came off the wire (which
// a page cannot read when CORS refuses it) and the CORS error, if any.
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2]);

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    // Chromium's own background traffic (updates, sync, safe browsing): this machine's closed
    // network refuses it, and it has no business in a request log of the page.
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // No name resolves but the loopback address: whatever the page might try to fetch from
    // elsewhere fails here (and is still in the request log, which the test checks).
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
  ],
  timeout: config.timeout_ms,
});

// Each page in a context of its own (Playwright gives every context a fresh profile): no
// HTTP cache or storage is shared, so the refused page's requests really reach the server.
async function openPage(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const requests = [];
  context.on('request', (r) =>
    requests.push({ url: r.url(), method: r.method(), resource_type: r.resourceType() }),
  );
  const failed = [];
  context.on('requestfailed', (r) => failed.push({ url: r.url(), error: r.failure()?.errorText }));
  const console_ = [];
  page.on('console', (m) => console_.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console_.push(`pageerror: ${e.message}`));

  const cdp = await context.newCDPSession(page);
  const exchanges = new Map();
  const exchange = (id) => {
    if (!exchanges.has(id)) exchanges.set(id, { url: null, request_headers: null });
    return exchanges.get(id);
  };
  cdp.on('Network.requestWillBeSent', (e) => {
    const x = exchange(e.requestId);
    x.url = e.request.url;
    x.method = e.request.method;
    x.request_headers = e.request.headers;
  });
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
    exchange(e.requestId).raw_request_headers = e.headers;
  });
  cdp.on('Network.responseReceivedExtraInfo', (e) => {
    const x = exchange(e.requestId);
    x.status = e.statusCode;
    x.response_headers = e.headers;
  });
  cdp.on('Network.responseReceived', (e) => {
    const x = exchange(e.requestId);
    x.status ??= e.response.status;
    x.from_cache = !!(e.response.fromDiskCache || e.response.fromPrefetchCache);
  });
  cdp.on('Network.loadingFinished', (e) => {
    exchange(e.requestId).finished = true;
  });
  cdp.on('Network.loadingFailed', (e) => {
    const x = exchange(e.requestId);
    x.error = e.errorText;
    x.cors_error = e.corsErrorStatus?.corsError ?? null;
  });
  await cdp.send('Network.enable');

  await page.goto(url, { timeout: config.timeout_ms });
  await page.waitForFunction(() => window.tabcacheReady === true, null, {
    timeout: config.timeout_ms,
  });
  return { context, page, requests, failed, console: console_, exchanges };
}

// The exchanges with our server, once each has ended (a status, and finished or failed):
// the protocol's events can trail the page's promise by a moment.
async function serverExchanges(opened) {
  const list = () =>
    [...opened.exchanges.values()].filter((x) => x.url && x.url.startsWith(config.server + '/'));
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (list().every((x) => x.status !== undefined && (x.finished || x.error))) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return list();
}

async function report(opened, extra) {
  const exchanges = await serverExchanges(opened);
  return {
    requests: opened.requests,
    failed: opened.failed,
    console: opened.console,
    server_exchanges: exchanges,
    ...extra,
  };
}

const job = { server: config.server, repo: config.repo, text: config.text };
const out = { chromium_version: browser.version() };
try {
  const allowed = await openPage(config.allowed_page);
  const result = await allowed.page.evaluate((j) => window.tabcacheRun(j), job);
  out.allowed = await report(allowed, { result });

  const refused = await openPage(config.refused_page);
  const refusedResult = await refused.page.evaluate((j) => window.tabcacheRun(j), job);
  const fetchResult = await refused.page.evaluate(
    (u) => window.tabcacheFetch(u),
    `${config.server}/${config.repo}/resolve/main/config.json`,
  );
  out.refused = await report(refused, { result: refusedResult, fetch: fetchResult });
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
