// A line chart of a few series over a sliding time window, drawn on a canvas: all the
// dashboard needs, without a chart library to ship.

/**
 * @param {HTMLCanvasElement} canvas
 * @param {{ t: number, values: number[] }[]} points oldest first; t in epoch ms
 * @param {{ colors: string[], windowMs: number, now: number }} options
 */
export function drawChart(canvas, points, { colors, windowMs, now }) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);

  const left = 48;
  const right = 8;
  const top = 8;
  const bottom = 20;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const start = now - windowMs;
  const visible = points.filter((p) => p.t >= start);
  const max = niceCeiling(Math.max(1, ...visible.flatMap((p) => p.values)));

  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#667085';
  g.strokeStyle = '#e3e6ea';
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + plotHeight - (plotHeight * i) / 4;
    g.beginPath();
    g.moveTo(left, Math.round(y) + 0.5);
    g.lineTo(left + plotWidth, Math.round(y) + 0.5);
    g.stroke();
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    g.fillText(formatNumber((max * i) / 4), left - 6, y);
  }
  g.textAlign = 'center';
  g.textBaseline = 'top';
  for (let minutesAgo = 0; minutesAgo * 60_000 <= windowMs; minutesAgo++) {
    const x = left + plotWidth - (plotWidth * minutesAgo * 60_000) / windowMs;
    g.textAlign = minutesAgo === 0 ? 'right' : x - left < 30 ? 'left' : 'center';
    g.fillText(minutesAgo === 0 ? 'now' : `-${minutesAgo} min`, x, top + plotHeight + 5);
  }

  const xOf = (t) => left + ((t - start) / windowMs) * plotWidth;
  const yOf = (v) => top + plotHeight - (v / max) * plotHeight;
  colors.forEach((color, series) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    visible.forEach((p, i) => {
      const x = xOf(p.t);
      const y = yOf(p.values[series]);
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  });
}

function niceCeiling(value) {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

export function formatNumber(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(value >= 1e7 ? 0 : 1)}M`;
  if (value >= 1e4) return `${(value / 1e3).toFixed(0)}k`;
  if (value >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value >= 1 ? value.toFixed(1) : value.toFixed(2);
}
