// Links a gateway through its pairing page in Debian's Chromium, as a person would:
//   node pair.mjs URL SCREENSHOT.png
// Opens URL, waits for the QR code, saves a screenshot of the whole page and prints
// "screenshot"; the test reads the code from the picture and shows it to wa-sim's phone.
// Then it waits, without touching the page, until the page itself shows the link as
// "connected" (the page reloads when the link changes), prints "connected" and exits 0.
import { chromium } from 'playwright-core';

const [url, shot] = process.argv.slice(2);
const deadline = Date.now() + 90_000;
const browser = await chromium.launch({
  executablePath: process.env.HERMES_CHROMIUM || '/usr/bin/chromium',
  // As root in a container, and with no network beyond loopback: nothing to fetch at start.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 1200 } });
  await page.goto(url);
  await page.waitForSelector('#qr svg', { timeout: 60_000 });
  await page.screenshot({ path: shot, fullPage: true });
  console.log('screenshot');
  let state = '';
  while (state !== 'connected') {
    if (Date.now() > deadline) throw new Error(`the page still shows '${state}'`);
    await new Promise((r) => setTimeout(r, 200));
    // The page may be reloading: read what is there, and try again.
    state = await page.textContent('#state', { timeout: 1000 }).catch(() => '');
  }
  console.log('connected');
} finally {
  await browser.close();
}
