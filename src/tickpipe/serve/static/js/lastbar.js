// A live update of the newest candle (or of the one before it, turning final), drawn without
// Plotly redrawing the figure.
//
// Every Plotly call that changes data (react, restyle, extendTraces) recomputes and redraws
// every trace and axis of the figure: about 20 ms for a dozen candles on an idle core here, and
// several times that on a loaded machine, so at a few dozen updates a second the page spent its
// time redrawing and a trade waited 624 ms (p95) to show. Within one candle nothing but that
// candle, its volume bar and the last points of the lines change, so here the two shapes Plotly
// drew for the newest candle are rewritten in place (their SVG paths), from the axes Plotly laid
// out; the lines follow at the next whole redraw (main.js: a new candle, or within
// FULL_EVERY_MS). The figure's data arrays are updated too, so whoever reads the chart's data
// (the crosshair, the tests) reads the candle shown.
//
// Plotly's internals read here (`_fullLayout`'s axes, the calcdata bound to its SVG groups) are
// checked at every step: anything unexpected answers false and the page redraws the figure
// instead.

/** The SVG group Plotly drew for trace number `index` (`kind`: "boxes" or "bars"). */
function traceGroup(div, kind, index) {
  for (const g of div.querySelectorAll(`.trace.${kind}`)) {
    const cd = g.__data__;
    if (Array.isArray(cd) && cd[0]?.trace?.index === index) return g;
  }
  return null;
}

/** The shape of point `i` in a trace group (Plotly draws them in the points' order), the
 * point Plotly numbered `at` (the candles it laid out before `i` may have left since). */
function shapeOf(group, selector, i, at = i) {
  const shape = group?.querySelectorAll(selector)[i];
  return shape && shape.__data__?.i === at ? shape : null;
}

const NUMBER = "(-?[\\d.]+(?:e[-+]?\\d+)?)";
// Plotly's candle path starts "M{left},{y}H{right}"; its volume bar "M{left},{y}V{y}H{right}".
const CANDLE_SIDES = new RegExp(`^M${NUMBER},${NUMBER}H${NUMBER}`);
const BAR_SIDES = new RegExp(`^M${NUMBER},${NUMBER}V${NUMBER}H${NUMBER}`);

/** Whether `value` lies inside an autoranged axis (a zoomed axis clips: anything goes). */
function fits(axis, ...values) {
  if (!axis.autorange) return true;
  const [low, high] = axis.range;
  return values.every((v) => v >= Math.min(low, high) && v <= Math.max(low, high));
}

/**
 * Draw `candle`, point `i` of the figure in `div` (trace 0, its volume point `i` of trace 1),
 * over what Plotly drew for it (shape number `at`: `i` plus the candles dropped on the left
 * since Plotly drew, see dropCandles): the candle's shape, or false when it cannot be done in
 * place: the candle moves an autoranged axis, or the shapes on screen are not that candle's.
 */
export function drawCandle(div, candle, i, colors, at = i) {
  const layout = div._fullLayout;
  const price = layout?.yaxis;
  const volume = layout?.yaxis2;
  const data = div.data;
  if (!price || !volume || !data || data.length < 2) return false;
  if (!fits(price, candle.high, candle.low) || !fits(volume, candle.volume)) return false;
  const box = shapeOf(traceGroup(div, "boxes", 0), "path.box", i, at);
  const bar = shapeOf(traceGroup(div, "bars", 1), "path", i, at);
  const sides = box && CANDLE_SIDES.exec(box.getAttribute("d") || "");
  const barSides = bar && BAR_SIDES.exec(bar.getAttribute("d") || "");
  if (!sides || !barSides) return false;

  const [candles, volumes] = data;
  const previous = i > 0 ? candles.close[i - 1] : candle.close;
  // Plotly's rule: up when the close is above the open; at the open, against the last close.
  const up = candle.close > candle.open || (candle.close === candle.open && candle.close >= previous);
  const color = up ? colors.up : colors.down;
  const left = Number(sides[1]);
  const right = Number(sides[3]);
  const mid = (left + right) / 2;
  const y = (v) => price.c2p(v).toFixed(2);
  const top = y(Math.max(candle.open, candle.close));
  const bottom = y(Math.min(candle.open, candle.close));
  box.setAttribute("d", `M${left},${bottom}H${right}V${top}H${left}Z` +
    `M${mid},${bottom}V${y(candle.low)}M${mid},${top}V${y(candle.high)}`);
  box.style.fill = color;
  box.style.stroke = color;

  const base = volume.c2p(0).toFixed(2);
  bar.setAttribute("d", `M${barSides[1]},${base}V${volume.c2p(candle.volume).toFixed(2)}` +
    `H${barSides[4]}V${base}Z`);
  const barColor = candle.close >= candle.open ? colors.up : colors.down;
  bar.style.fill = barColor;

  // The figure's own data, as the next full drawing would hold it.
  candles.open[i] = candle.open;
  candles.high[i] = candle.high;
  candles.low[i] = candle.low;
  candles.close[i] = candle.close;
  volumes.y[i] = candle.volume;
  if (Array.isArray(volumes.marker?.color)) volumes.marker.color[i] = barColor;
  return box;
}

/** The trace indexes whose x is the candles' own (one shared array: volume and the lines). */
function sharers(data) {
  const out = [];
  data.forEach((t, k) => {
    if (k > 0 && t.x === data[0].x) out.push(k);
  });
  return out;
}

/**
 * Append `candle` to the figure, right of its newest candle, at `x` (its time on the axis):
 * a copy of the newest candle's shapes moved along the time axis, then drawn as drawCandle
 * does. `at`: the shape number it gets (the figure's length plus the candles dropped). False,
 * with nothing changed, when Plotly must lay the figure out again: the time axis is autoranged
 * (or `fixed`: set by the page, to follow the newest) and has no room left for it (renderChart
 * keeps some), or the candle moves an autoranged price or volume axis.
 */
export function appendCandle(div, candle, x, colors, at, fixed = false) {
  const layout = div._fullLayout;
  const time = layout?.xaxis;
  const price = layout?.yaxis;
  const volume = layout?.yaxis2;
  const data = div.data;
  if (!time || !price || !volume || !data || data.length < 2 || typeof time.d2c !== "function") return false;
  const [candles, volumes] = data;
  const n = candles.close.length;
  if (!n || !fits(price, candle.high, candle.low) || !fits(volume, candle.volume)) return false;
  const boxes = traceGroup(div, "boxes", 0);
  const bars = traceGroup(div, "bars", 1);
  const lastBox = shapeOf(boxes, "path.box", n - 1, at - 1);
  const lastBar = shapeOf(bars, "path", n - 1, at - 1);
  const sides = lastBox && CANDLE_SIDES.exec(lastBox.getAttribute("d") || "");
  const barSides = lastBar && BAR_SIDES.exec(lastBar.getAttribute("d") || "");
  const point = lastBar?.parentNode;
  if (!sides || !barSides || !point?.classList.contains("point")) return false;
  const dx = time.c2p(time.d2c(x)) - time.c2p(time.d2c(candles.x[n - 1]));
  const right = Number(sides[3]) + dx;
  if (!Number.isFinite(dx) || dx <= 0) return false;
  if ((time.autorange || fixed) && right > time._length) return false; // Plotly moves the axis

  const box = lastBox.cloneNode(false);
  box.setAttribute("d", `M${Number(sides[1]) + dx},0H${right}`);
  box.__data__ = { i: at, dir: candle.close >= candle.open ? "increasing" : "decreasing" };
  const barPoint = point.cloneNode(true);
  const bar = barPoint.querySelector("path");
  bar.setAttribute("d", `M${Number(barSides[1]) + dx},0V0H${Number(barSides[4]) + dx}V0Z`);
  barPoint.__data__ = { i: at };
  bar.__data__ = barPoint.__data__;
  // Off the shown range (a zoomed chart): kept for a pan, out of sight like Plotly's clipping.
  const outside = right - dx / 2 < 0 || right - dx / 2 > time._length;
  box.style.visibility = outside ? "hidden" : "";
  bar.style.visibility = outside ? "hidden" : "";
  lastBox.after(box);
  point.after(barPoint);

  candles.x.push(x); // volume and the lines share it
  if (volumes.x !== candles.x) volumes.x.push(x);
  for (const key of ["open", "high", "low", "close"]) candles[key].push(candle[key]);
  candles.customdata?.push(candle.start);
  volumes.y.push(candle.volume);
  volumes.customdata?.push(candle.start);
  if (Array.isArray(volumes.marker?.color)) volumes.marker.color.push(colors.up);
  return drawCandle(div, candle, n, colors, at);
}

/**
 * The first `n` candles of the figure (the points Plotly numbered `at` to `at + n - 1`) went
 * out of the lookback: their shapes removed, and gone from the figure's data (the lines' values
 * with them), so the figure holds what the page's series holds. Plotly's layout (and its
 * hover, by its numbers) keeps them until the next whole redraw. False when the shapes on
 * screen are not those candles'.
 */
export function dropCandles(div, at, n) {
  const data = div.data;
  const boxes = traceGroup(div, "boxes", 0);
  const bars = traceGroup(div, "bars", 1);
  const shapes = [];
  for (let j = 0; j < n; j += 1) {
    const box = shapeOf(boxes, "path.box", j, at + j);
    const bar = shapeOf(bars, "path", j, at + j);
    if (!box || !bar?.parentNode.classList.contains("point")) return false;
    shapes.push(box, bar.parentNode);
  }
  for (const shape of shapes) shape.remove();
  const [candles, volumes] = data;
  for (const key of ["open", "high", "low", "close", "customdata"]) candles[key]?.splice(0, n);
  volumes.y.splice(0, n);
  volumes.customdata?.splice(0, n);
  if (Array.isArray(volumes.marker?.color)) volumes.marker.color.splice(0, n);
  if (volumes.x !== candles.x) volumes.x.splice(0, n);
  for (const k of sharers(data).slice(1)) data[k].y?.splice(0, n);
  candles.x.splice(0, n);
  return true;
}

/**
 * Redraw line `k` of the figure (a price-axis line whose x is the candles') in place with the
 * values `y` (null: no value; `connect`: lines go over them, else they break there). False
 * when Plotly drew no such line (nothing yet: the whole redraw draws it).
 */
export function drawLine(div, k, y, connect) {
  const layout = div._fullLayout;
  const time = layout?.xaxis;
  const price = layout?.yaxis;
  const group = traceGroup(div, "scatter", k);
  const path = group?.querySelector("path.js-line");
  const x = div.data?.[0]?.x;
  if (!time || !price || !path || !x || x.length !== y.length) return false;
  let d = "";
  let broken = true;
  for (let j = 0; j < y.length; j += 1) {
    if (y[j] === null || y[j] === undefined || !Number.isFinite(y[j])) {
      if (!connect) broken = true;
      continue;
    }
    d += `${broken ? "M" : "L"}${time.c2p(time.d2c(x[j])).toFixed(2)},${price.c2p(y[j]).toFixed(2)}`;
    broken = false;
  }
  if (!d) return false;
  path.setAttribute("d", d);
  div.data[k].y = y;
  return true;
}
