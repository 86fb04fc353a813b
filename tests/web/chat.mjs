// Drives Debian's headless Chromium through playwright-core against two
// skyhop nodes' web pages, as two people would use them: A opens a
// conversation with B and sends a chat; A must see it marked delivered
// (hops, ms) and B must see it arrive. Then both reload their page and
// open the conversation again: it comes back from each node's history,
// A's chat still marked delivered (said by the recipient), B's received.
// Saves a screenshot of both pages.
//
// Env: SKYHOP_A_URL, SKYHOP_B_URL (each the node's /login?token=... URL),
//      SKYHOP_A_ID, SKYHOP_B_ID (the node ids), SKYHOP_TEXT (the message),
//      SKYHOP_PROFILE (a fresh user-data dir), SKYHOP_SHOT (screenshot path).
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const TIMEOUT = 30000;

const context = await chromium.launchPersistentContext(env("SKYHOP_PROFILE"), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1100, height: 520 },
});
try {
  const errors = [];
  const open = async (url) => {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    await page.goto(url);
    await page.locator("#live", { hasText: "live" }).waitFor({ timeout: TIMEOUT });
    return page;
  };
  const a = await open(env("SKYHOP_A_URL"));
  const b = await open(env("SKYHOP_B_URL"));
  const text = env("SKYHOP_TEXT");

  // B chose to be listed (--listed): A's page shows it among the nodes at
  // their supernode, by the name the supernode checked.
  await a.locator(`#listed li[data-id="${env("SKYHOP_B_ID")}"]`, { hasText: env("SKYHOP_B_NAME") + " (" }).waitFor({ timeout: TIMEOUT });
  console.log("A's listing: " + (await a.locator("#listed").textContent()));

  // A writes to B by name: A's node looks the name up.
  await a.fill("#add-id", env("SKYHOP_B_NAME"));
  await a.click("#add-form button");
  await a.locator(`#contacts li[data-id="${env("SKYHOP_B_ID")}"]`, { hasText: env("SKYHOP_B_NAME") }).waitFor({ timeout: TIMEOUT });
  await a.fill("#text", text);
  await a.click("#send");
  await a.locator(".msg.out.delivered", { hasText: text }).waitFor({ timeout: TIMEOUT });
  const state = await a.locator(".msg.out.delivered .state").first().textContent();
  if (!/^delivered \(\d+ hops, [\d.]+ ms\)$/.test(state)) throw new Error(`A shows ${state}`);

  await b.locator(".msg.in", { hasText: text }).waitFor({ timeout: TIMEOUT });
  const bodyShown = await b.locator(".msg.in").first().evaluate((e) => e.firstChild.textContent);
  if (bodyShown !== text) throw new Error(`B shows ${JSON.stringify(bodyShown)}, not the text sent`);
  // The node view is live: A is an ordinary node with a supernode.
  const primary = await a.locator("#primary").textContent();
  if (!/^[0-9a-f]{8}$/.test(primary)) throw new Error(`A's supernode shows ${primary}`);

  // A reloaded page has no memory of its own: the conversation is the
  // node's history.
  const reopen = async (page, peer) => {
    await page.reload();
    await page.locator("#live", { hasText: "live" }).waitFor({ timeout: TIMEOUT });
    await page.locator(`#contacts li[data-id="${peer}"]`).waitFor({ timeout: TIMEOUT });
    await page.click(`#contacts li[data-id="${peer}"]`);
  };
  await reopen(a, env("SKYHOP_B_ID"));
  const kept = a.locator(".msg.out.delivered", { hasText: text });
  await kept.waitFor({ timeout: TIMEOUT });
  const keptState = await kept.locator(".state").textContent();
  if (!/delivered \(\d+ hops, said by the recipient\)$/.test(keptState)) {
    throw new Error(`A's history shows ${keptState}`);
  }
  await reopen(b, env("SKYHOP_A_ID"));
  await b.locator(".msg.in", { hasText: text }).waitFor({ timeout: TIMEOUT });
  const keptBody = await b.locator(".msg.in").first().evaluate((e) => e.firstChild.textContent);
  if (keptBody !== text) throw new Error(`B's history shows ${JSON.stringify(keptBody)}`);
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);

  // Both pages side by side in one screenshot.
  const shotA = await a.screenshot();
  const shotB = await b.screenshot();
  const both = await context.newPage();
  await both.setViewportSize({ width: 1100, height: 1040 });
  const img = (buf) => `<img style="display:block" src="data:image/png;base64,${buf.toString("base64")}">`;
  await both.setContent(`<body style="margin:0">${img(shotA)}${img(shotB)}</body>`);
  await both.screenshot({ path: env("SKYHOP_SHOT") });
  console.log(`A: ${state}; B received ${JSON.stringify(bodyShown)}`);
  console.log(`after a reload, A's history: ${keptState}; B's history: ${JSON.stringify(keptBody)}`);
} catch (e) {
  // Say what each page showed, so that a failure is readable.
  for (const [name, page] of context.pages().map((p, i) => [["A", "B"][i] || "other", p])) {
    const shown = await page.locator("body").innerText().catch(() => "(unreadable)");
    console.error(`--- ${name}'s page:\n${shown}`);
  }
  throw e;
} finally {
  await context.close();
}
