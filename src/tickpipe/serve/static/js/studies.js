// The chart's study controls: RSI, MACD and Bollinger bands (on/off and their periods) and the
// venues compared with the shown one. The settings live in the caller's state; every change
// calls `onChange()` so the caller redraws and keeps them in the URL.

import { formatParams, parseParams } from "./indicators.js";

const $ = (id) => document.getElementById(id);

export class StudyControls {
  /** `indicators`: the settings object to edit in place; `venues`: a VenueCompare. */
  constructor({ indicators, venues, onChange, onVenues }) {
    this.indicators = indicators;
    this.venues = venues;
    const box = $("studies");
    for (const input of box.querySelectorAll("input[data-study]")) {
      input.checked = indicators[input.dataset.study].on;
    }
    for (const input of box.querySelectorAll("input[data-study-params]")) {
      input.value = formatParams(input.dataset.studyParams, indicators[input.dataset.studyParams]);
    }
    box.addEventListener("change", (e) => {
      const name = e.target.dataset.study || e.target.dataset.studyParams;
      if (!name) return;
      if (e.target.dataset.study) {
        indicators[name].on = e.target.checked;
      } else {
        // A typed period is taken once it reads right; until then the box is marked.
        const parsed = parseParams(name, e.target.value);
        e.target.classList.toggle("invalid", parsed === null);
        if (parsed === null) return;
        Object.assign(indicators[name], parsed, { on: true });
        e.target.value = formatParams(name, indicators[name]);
        box.querySelector(`input[data-study="${name}"]`).checked = true;
      }
      onChange();
    });
    $("venues").addEventListener("change", (e) => {
      if (!e.target.dataset.venue) return;
      venues.toggle(e.target.dataset.venue, e.target.checked);
      onVenues();
    });
  }

  /** One box per other exchange listing the shown asset; hidden when there is none. */
  showVenues(choices) {
    const box = $("venues");
    box.hidden = !choices.length;
    const labels = choices.map((c) => {
      const label = document.createElement("label");
      const input = Object.assign(document.createElement("input"), { type: "checkbox", checked: this.venues.names.includes(c.exchange) });
      input.dataset.venue = c.exchange;
      label.title = `${c.symbol} on ${c.exchange}, drawn over the chart; the panel below shows the spread`;
      label.append(input, ` ${c.exchange}`);
      return label;
    });
    box.replaceChildren(Object.assign(document.createElement("span"), { className: "muted", textContent: "vs" }), ...labels);
  }
}
