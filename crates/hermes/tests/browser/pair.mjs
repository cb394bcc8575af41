// Links a gateway through its pairing page in Debian's Chromium, as a person would:
//   node pair.mjs URL SCREENSHOT.png [passkey]
// Opens URL, waits for the QR code, saves a screenshot of the whole page and prints
// "screenshot"; the test reads the code from the picture and shows it to wa-sim's phone.
// With "passkey", the phone's WhatsApp asks for a passkey first: the page must say so
// ("passkey" printed), then the button for a new code is clicked and a new screenshot taken.
// Then it waits, without touching the page, until the page itself shows the link as
// "connected" (the page reloads when the link changes), prints "connected" and exits 0.
import { chromium } from 'playwright-core';

const [url, shot, mode] = process.argv.slice(2);
const deadline = Date.now() + 120_000;
const browser = await chromium.launch({
  executablePath: process.env.HERMES_CHROMIUM || '/usr/bin/chromium',
  // As root in a container, and with no network beyond loopback: nothing to fetch at start.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

// The text of `selector` once it satisfies `ok`; the page may reload meanwhile.
async function until(page, selector, ok, what) {
  const give_up = Date.now() + 45_000;
  for (;;) {
    const text = await page.textContent(selector, { timeout: 1000 }).catch((e) => `(error: ${e.message.split('\n')[0]})`);
    if (process.env.HERMES_BROWSER_DEBUG) console.error(`${selector}: ${text}`);
    if (ok(text || '')) return text;
    if (Date.now() > Math.min(deadline, give_up)) {
      throw new Error(`${what}: the page still shows '${text}':\n${await page.content().catch(() => '')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

try {
  const page = await browser.newPage({ viewport: { width: 900, height: 1200 } });
  await page.goto(url);
  await page.waitForSelector('#qr svg', { timeout: 60_000 });
  await page.screenshot({ path: shot, fullPage: true });
  console.log('screenshot');
  if (mode === 'passkey') {
    await until(page, '#step', (t) => t.includes('passkey'), 'no passkey message');
    console.log('passkey');
    // A person clicks again when a reload swallowed the click.
    for (let tries = 0; ; tries++) {
      await page.click('button[value=qr]', { timeout: 5_000 }).catch(() => {});
      const asked = await page.waitForSelector('#qr svg', { timeout: 10_000 }).then(() => true, () => false);
      if (asked) break;
      if (process.env.HERMES_BROWSER_DEBUG) console.error(`after click ${tries}: ${page.url()}\n${await page.content().catch(() => '')}`);
      if (tries === 5) throw new Error(`no new QR code after the click:\n${await page.content().catch(() => '')}`);
    }
    await page.screenshot({ path: shot, fullPage: true });
    console.log('screenshot');
  }
  await until(page, '#state', (t) => t === 'connected', 'not connected');
  console.log('connected');
} finally {
  await browser.close();
}
