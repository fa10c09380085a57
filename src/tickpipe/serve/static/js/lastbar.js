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

/** The shape of point `i` in a trace group (Plotly draws them in the points' order). */
function shapeOf(group, selector, i) {
  const shape = group?.querySelectorAll(selector)[i];
  return shape && shape.__data__?.i === i ? shape : null;
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
 * over what Plotly drew for it: the newest candle, or the one before it turning final. False
 * when it cannot be done in place: the candle moves an autoranged axis, or the shapes on
 * screen are not that candle's.
 */
export function drawCandle(div, candle, i, colors) {
  const layout = div._fullLayout;
  const price = layout?.yaxis;
  const volume = layout?.yaxis2;
  const data = div.data;
  if (!price || !volume || !data || data.length < 2) return false;
  if (!fits(price, candle.high, candle.low) || !fits(volume, candle.volume)) return false;
  const box = shapeOf(traceGroup(div, "boxes", 0), "path.box", i);
  const bar = shapeOf(traceGroup(div, "bars", 1), "path", i);
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
  return true;
}
