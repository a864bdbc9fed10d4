// Line charts as inline SVG: a few series of (x, y) points, axes with their ranges, a legend.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 520;
const HEIGHT = 220;
const PAD = { left: 48, right: 12, top: 28, bottom: 30 };
export const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"];

function node(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function label(value) {
  return Math.abs(value) >= 1000 || Number.isInteger(value) ? String(Math.round(value)) : value.toPrecision(3);
}

/** series: [{name, points: [[x, y], …]}]; returns an <svg> (or null when no series has two points). */
export function lineChart(series, { xLabel = "step", yMin, yMax } = {}) {
  const drawn = series.filter((s) => s.points.length > 0);
  const all = drawn.flatMap((s) => s.points);
  if (all.length < 2) return null;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [yMin ?? Math.min(...ys), yMax ?? Math.max(...ys)];
  const spanX = x1 - x0 || 1;
  const spanY = y1 - y0 || 1;
  const px = (x) => PAD.left + ((x - x0) / spanX) * (WIDTH - PAD.left - PAD.right);
  const py = (y) => HEIGHT - PAD.bottom - ((y - y0) / spanY) * (HEIGHT - PAD.top - PAD.bottom);

  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "line-chart" });
  svg.append(node("rect", { x: PAD.left, y: PAD.top, width: WIDTH - PAD.left - PAD.right, height: HEIGHT - PAD.top - PAD.bottom, class: "plot" }));
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    svg.append(node("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: py(y), y2: py(y), class: "grid" }));
    svg.append(node("text", { x: PAD.left - 6, y: py(y) + 4, "text-anchor": "end" }, label(y)));
  }
  svg.append(node("text", { x: PAD.left, y: HEIGHT - 10 }, label(x0)));
  svg.append(node("text", { x: WIDTH - PAD.right, y: HEIGHT - 10, "text-anchor": "end" }, label(x1)));
  svg.append(node("text", { x: (PAD.left + WIDTH - PAD.right) / 2, y: HEIGHT - 10, "text-anchor": "middle" }, xLabel));
  let legendX = PAD.left;
  drawn.forEach((s, index) => {
    const colour = COLOURS[index % COLOURS.length];
    const points = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    if (s.points.length > 1) svg.append(node("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2, "data-series": s.name }));
    else svg.append(node("circle", { cx: px(s.points[0][0]), cy: py(s.points[0][1]), r: 3, fill: colour, "data-series": s.name }));
    svg.append(node("rect", { x: legendX, y: 11, width: 12, height: 3, fill: colour }));
    svg.append(node("text", { x: legendX + 16, y: 16 }, s.name));
    legendX += 28 + s.name.length * 6.5; // the legend runs along the top margin, clear of the curves
  });
  return svg;
}
