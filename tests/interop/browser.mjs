// Drives Debian's headless Chromium (playwright-core, no downloaded browser) through a running
// `ssobroker demo` exactly as README's "A new admin's first steps" describes: a demo login as a
// new user, the user portal, the admin console (find the user, disable them), the refused
// login, and the refusal in the audit log; then the connection and client pages and the SSO
// admin sign-in. Every page is saved as a full-page PNG into <screenshot-dir>.
//
// Fails (exit 1) on any console error, uncaught page error, HTTP 5xx, failed same-origin
// request, a page wider than a phone's screen, or a step whose expected text is missing.
// Run by tests/it/browser.rs:
//   node tests/interop/browser.mjs <base-url> <admin-name> <admin-password> <screenshot-dir>
// CHROMIUM overrides the browser (default /usr/bin/chromium).

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, adminName, adminPassword, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: browser.mjs <base-url> <admin-name> <admin-password> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const USER = { email: 'pat@example.com', given: 'Pat', family: 'Example', groups: 'Engineering' };
const DESKTOP = { width: 1280, height: 800 };
// An iPhone 12-sized viewport: every page must fit its width (tables scroll inside their box).
const PHONE = { width: 390, height: 844 };
const origin = new URL(base).origin;

const problems = [];
const shots = [];
let step = 'start';
// The one page that answers with an error status on purpose (the refused login). Chromium logs
// every such document as a console error; it is expected there and nowhere else.
let expectedErrorPage = null;

// No background traffic: a closed network refuses Chromium's own connections. launch() gives
// every run a fresh, empty profile (a temporary --user-data-dir it deletes at close).
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

function watch(page) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const e = expectedErrorPage;
    if (e && m.location().url === e.url && m.text().includes(`status of ${e.status} `)) {
      e.logged = true;
      return;
    }
    problems.push(`[${step}] console error: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => problems.push(`[${step}] page error: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 500) problems.push(`[${step}] HTTP ${r.status()} from ${r.url()}`);
  });
  page.on('requestfailed', (r) => {
    // A navigation that a newer one replaces (the auto-posting form) is aborted, not failed.
    const reason = r.failure()?.errorText ?? '';
    if (r.url().startsWith(origin) && reason !== 'net::ERR_ABORTED') {
      problems.push(`[${step}] request failed: ${r.method()} ${r.url()}: ${reason}`);
    }
  });
}

function check(cond, what) {
  if (!cond) throw new Error(`[${step}] ${what}`);
}

/** Waits until the page shows `text` (a substring of some element's text). */
async function see(page, text) {
  try {
    await page.getByText(text, { exact: false }).first().waitFor({ state: 'visible', timeout: 10_000 });
  } catch {
    const body = (await page.locator('body').innerText().catch(() => '')).slice(0, 2000);
    throw new Error(`[${step}] expected "${text}" on ${page.url()}; the page shows:\n${body}`);
  }
}

/** Saves a full-page screenshot, after checking that nothing overflows the viewport's width. */
async function shot(page, name) {
  await page.waitForLoadState('load');
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  if (scroll > client) {
    problems.push(`[${step}] ${page.url()} is ${scroll}px wide in a ${client}px viewport (scrolls sideways)`);
  }
  const file = join(outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(`${name}.png  ${page.url()}`);
}

/** The same page at phone size too, then back to the desktop size. */
async function phoneShot(page, name) {
  await page.setViewportSize(PHONE);
  await shot(page, `${name}-phone`);
  await page.setViewportSize(DESKTOP);
}

/** From the sample app's home page through the development IdP as `who`. */
async function demoLogin(page, who) {
  await page.getByRole('link', { name: 'Log in with ssobroker' }).click();
  await page.waitForURL(/\/dev-idp\/sso/);
  await see(page, 'Development identity provider');
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Given name').fill(who.given);
  await page.getByLabel('Family name').fill(who.family);
  await page.getByLabel('Groups').fill(who.groups);
  return page;
}

async function run() {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  watch(page);

  // 1. README "See a whole login": the sample app, the development IdP, the claims.
  step = 'demo login';
  await page.goto(`${base}/demo-app/`);
  await see(page, 'Sample app');
  await shot(page, '01-demo-app');
  await demoLogin(page, USER);
  await shot(page, '02-dev-idp');
  // The IdP's answer is an auto-posting form (static/autopost.js) that lands on the callback.
  await Promise.all([
    page.waitForURL(/\/demo-app\/callback/),
    page.getByRole('button', { name: /Sign in and send/ }).click(),
  ]);
  await see(page, 'Signed in.');
  await see(page, `"email": "${USER.email}"`);
  await see(page, '"engineer"');
  await shot(page, '03-demo-app-claims');

  // 2. The user portal: apps the roles allow, the profile, sign-out.
  step = 'portal';
  await page.goto(`${base}/`);
  await see(page, `Hello, ${USER.given}`);
  await see(page, USER.email);
  check(await page.getByRole('link', { name: 'sample-app' }).count() === 1, 'the portal lists sample-app');
  await shot(page, '04-portal');
  await phoneShot(page, '04-portal');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await see(page, 'signed out');
  await shot(page, '05-portal-signed-out');
  await page.goto(`${base}/`);
  await see(page, 'Choose your organisation');
  await shot(page, '06-portal-sign-in');

  // 3. README steps 2-4: sign in as admin, find the demo user, disable them.
  step = 'admin sign-in';
  await page.getByRole('link', { name: 'Administrator sign-in' }).click();
  await page.waitForURL(/\/admin\/login/);
  await shot(page, '07-admin-login');
  await phoneShot(page, '07-admin-login');
  await page.getByLabel('Admin name').fill(adminName);
  await page.getByLabel('Password').fill(adminPassword);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL(/\/admin\/?$/);
  step = 'admin overview';
  await see(page, 'Overview');
  await see(page, 'Recent first-time logins');
  await see(page, USER.email);
  await shot(page, '08-admin-overview');
  await phoneShot(page, '08-admin-overview');

  step = 'admin users';
  await page.getByRole('navigation', { name: 'Admin sections' }).getByRole('link', { name: 'Users' }).click();
  await page.waitForURL(/\/admin\/users/);
  await page.getByLabel('Search by email, name or id').fill('pat');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/q=pat/);
  await see(page, 'matching “pat”');
  await shot(page, '09-admin-users-search');
  await phoneShot(page, '09-admin-users-search');
  await page.getByRole('link', { name: USER.email }).click();
  await page.waitForURL(/\/admin\/users\/[^/?]+$/);
  step = 'admin user';
  await see(page, 'Identities');
  await see(page, 'engineer');
  check(await page.locator('.badge.ok', { hasText: 'active' }).count() === 1, 'the user is active');
  await shot(page, '10-admin-user');
  await page.getByRole('button', { name: 'Disable user' }).click();
  await page.waitForLoadState('load');
  step = 'admin user disabled';
  check(
    await page.locator('.badge.bad', { hasText: 'disabled' }).count() === 1,
    `the user shows as disabled (at ${page.url()})`,
  );
  await see(page, 'Enable user');
  await see(page, 'user.disabled');
  await shot(page, '11-admin-user-disabled');
  await phoneShot(page, '11-admin-user-disabled');

  // 4. README step 5: the same user logs in again and is refused.
  step = 'refused login';
  await page.goto(`${base}/demo-app/`);
  await demoLogin(page, USER);
  await shot(page, '12-dev-idp-again');
  const acs = `${base}/saml/dev-idp/acs`;
  expectedErrorPage = { url: acs, status: 403, logged: false };
  // The IdP's auto-posting form goes on to the ACS, which refuses with a page of its own.
  const [acsResponse] = await Promise.all([
    page.waitForResponse((r) => r.url() === acs && r.request().method() === 'POST'),
    page.getByRole('button', { name: /Sign in and send/ }).click(),
  ]);
  await page.waitForURL(acs);
  await see(page, 'Sign-in failed');
  await see(page, 'Support reference');
  check(acsResponse.status() === 403, `the ACS refuses with 403, not ${acsResponse.status()}`);
  const refused = await page.locator('body').innerText();
  check(!refused.includes(`"email": "${USER.email}"`), 'no claims for a disabled user');
  await shot(page, '13-login-refused');
  await phoneShot(page, '13-login-refused');
  expectedErrorPage = null;

  step = 'admin audit';
  await page.goto(`${base}/admin`);
  await page.getByRole('navigation', { name: 'Admin sections' }).getByRole('link', { name: 'Audit log' }).click();
  await page.waitForURL(/\/admin\/audit/);
  await shot(page, '14-admin-audit');
  await page.getByLabel('Kind').fill('login.failed');
  await page.getByLabel('User (id or email)').fill(USER.email);
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/kind=login.failed/);
  const row = page.locator('table.audit tbody tr', { hasText: 'login.failed' });
  check(await row.count() >= 1, 'a login.failed row for the user');
  await see(page, 'user_disabled');
  check((await row.first().innerText()).includes('user_disabled'), 'the refusal carries reason user_disabled');
  await shot(page, '15-admin-audit-refused');
  await phoneShot(page, '15-admin-audit-refused');

  // 5. The rest of the console: connections and clients (list, detail, register).
  step = 'admin connections';
  await page.getByRole('navigation', { name: 'Admin sections' }).getByRole('link', { name: 'Connections' }).click();
  await page.waitForURL(/\/admin\/connections$/);
  await see(page, 'dev-idp');
  await shot(page, '16-admin-connections');
  await page.locator('table a[href="/admin/connections/dev-idp"]').click();
  await page.waitForURL(/\/admin\/connections\/dev-idp$/);
  await see(page, 'ACS URL');
  await see(page, '/saml/dev-idp/acs');
  await shot(page, '17-admin-connection');
  await phoneShot(page, '17-admin-connection');

  step = 'admin clients';
  await page.getByRole('navigation', { name: 'Admin sections' }).getByRole('link', { name: 'Clients' }).click();
  await page.waitForURL(/\/admin\/clients$/);
  await see(page, 'sample-app');
  await shot(page, '18-admin-clients');
  await page.getByRole('link', { name: 'sample-app', exact: true }).click();
  await page.waitForURL(/\/admin\/clients\/sample-app$/);
  await see(page, 'Redirect URIs');
  await shot(page, '19-admin-client');
  await page.goto(`${base}/admin/clients`);
  await page.getByLabel('Client id').fill('browser-test-app');
  await page.getByLabel('Redirect URIs (one per line').fill('https://app.example.com/callback');
  await page.getByLabel('Portal launch URL').fill('https://app.example.com/');
  // The new client's page answers the POST itself: its secret is shown once, never in a URL.
  await page.getByRole('button', { name: 'Register' }).click();
  await see(page, 'shown once');
  check((await page.locator('h1').innerText()) === 'browser-test-app', 'the new client\'s page');
  await shot(page, '20-admin-client-registered');

  step = 'admin sign-out';
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/admin\/login/);
  await page.goto(`${base}/admin/users`);
  await page.waitForURL(/\/admin\/login/);
  await shot(page, '21-admin-signed-out');

  // 6. README step 2's other way in: an SSO admin (the IT-Admins group gives the admin role).
  // With one connection the broker goes straight to its IdP.
  step = 'admin SSO sign-in';
  const ssoAdmin = { email: 'it.admin@example.com', given: 'Ida', family: 'Admin', groups: 'IT-Admins' };
  await page.getByRole('link', { name: 'Sign in with your identity provider' }).click();
  await page.waitForURL(/\/dev-idp\/sso/);
  await page.getByLabel('Email').fill(ssoAdmin.email);
  await page.getByLabel('Given name').fill(ssoAdmin.given);
  await page.getByLabel('Family name').fill(ssoAdmin.family);
  await page.getByLabel('Groups').fill(ssoAdmin.groups);
  await shot(page, '22-dev-idp-admin');
  // The IdP's answer ends on a "Signed in" page that refreshes itself into the console (the
  // browser would not send a SameSite=Strict cookie set during the IdP's cross-site redirects).
  await page.getByRole('button', { name: /Sign in and send/ }).click();
  await page.waitForURL(/\/admin\/?$/, { timeout: 15_000 });
  await see(page, 'Recent first-time logins');
  check(
    (await page.locator('.signout').innerText()).includes(ssoAdmin.email),
    'the console names the SSO admin',
  );
  await shot(page, '23-admin-overview-sso');

  // The console's sign-out asks next whether to sign out of single sign-on too. Declined
  // (the admin goes back to the console's sign-in), the same link answers that "Signed in"
  // page at once. Served here without its refresh, it stays to be saved, and its link (for
  // browsers that refuse refreshes) goes on.
  step = 'admin SSO continue page';
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/logout$/);
  await see(page, 'Sign out of the single sign-on session');
  await shot(page, '24-admin-sso-signout-offer');
  await page.goto(`${base}/admin/login`);
  const sso = /\/admin\/sso$/;
  const refresh = '<meta http-equiv="refresh" content="0;url=/admin">';
  await page.route(sso, async (route) => {
    const response = await route.fetch({ maxRedirects: 0 });
    const body = await response.text();
    if (!body.includes(refresh)) problems.push(`[${step}] /admin/sso lacks ${refresh}`);
    await route.fulfill({ response, body: body.replace(refresh, '') });
  });
  await page.getByRole('link', { name: 'Sign in with your identity provider' }).click();
  await page.waitForURL(sso);
  await see(page, 'Continue to the admin console');
  await shot(page, '25-admin-sso-continue');
  await page.unroute(sso);
  await page.getByRole('link', { name: 'Continue to the admin console' }).click();
  await page.waitForURL(/\/admin\/?$/);
  await see(page, ssoAdmin.email);

  // Accepted, the sign-out ends the broker session and goes through the IdP's single logout:
  // the console cannot be reopened without the IdP.
  step = 'admin SSO full sign-out';
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/logout$/);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/saml\/dev-idp\/slo/);
  await see(page, 'You are signed out');
  await shot(page, '26-admin-sso-signed-out');
  await page.goto(`${base}/admin/sso`);
  await page.waitForURL(/\/dev-idp\/sso/);

  await context.close();
}

let failed = null;
try {
  await run();
} catch (e) {
  failed = e;
}
await browser.close();

for (const s of shots) console.log(`screenshot ${s}`);
for (const p of problems) console.error(`PROBLEM ${p}`);
if (failed) console.error(`FAILED ${failed.stack ?? failed}`);
if (failed || problems.length > 0) process.exit(1);
console.log(`ok: ${shots.length} screenshots in ${outDir}`);
