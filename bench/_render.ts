/**
 * Renders one Vega-Lite spec (JSON on stdin) to SVG (on stdout), headless. Run by
 * bench/_plots.ts in its own process:
 *
 *   deno run --no-config --lock=bench/plots.lock --allow-read --allow-env bench/_render.ts
 *
 * Vega and Vega-Lite are pinned here and locked in bench/plots.lock, apart from the project's
 * deno.lock: Deno fetches every npm package of deno.lock when it starts with an empty cache,
 * and fsbus itself must not pay for the bench's plotting library.
 *
 * @module
 */

const VEGA = "npm:vega@6.2.0";
const VEGA_LITE = "npm:vega-lite@6.4.1";

interface VegaView {
  toSVG(): Promise<string>;
  finalize(): void;
}
interface Vega {
  parse(spec: unknown): unknown;
  View: new (runtime: unknown, options: { renderer: "none" }) => VegaView;
}
interface VegaLite {
  compile(spec: unknown): { spec: unknown };
}

if (import.meta.main) {
  // Dynamic imports of names, not literals: the project's type check and lockfile never see
  // them; this process resolves them under bench/plots.lock.
  const vega = (await import(VEGA)) as Vega;
  const vl = (await import(VEGA_LITE)) as VegaLite;
  const spec = JSON.parse(await new Response(Deno.stdin.readable).text());
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  await Deno.stdout.write(new TextEncoder().encode(svg + "\n"));
}
