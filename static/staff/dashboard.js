/* Draws the dashboard's charts with Chart.js (static/vendor/chartjs) from the data the page
   passes with json_script (#dashboard-data). Figures arrive as strings (exact decimals) and
   are turned into numbers only to be drawn; the tables beside each chart hold the figures. */
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  if (!source || typeof Chart === "undefined") {
    return;
  }
  var data = JSON.parse(source.textContent);
  var charts = {};
  window.staffCharts = charts;

  var COLOURS = ["#0b57d0", "#c2410c", "#146c2e", "#7c3aed", "#b3261e", "#0e7490"];

  function numbers(values) {
    return (values || []).map(function (value) {
      return value === null || value === undefined ? null : Number(value);
    });
  }

  function series(metric, colour, extra) {
    var found = data.series[metric];
    if (!found) {
      return null;
    }
    return Object.assign(
      {
        label: found.label,
        data: numbers(found.values),
        borderColor: colour,
        backgroundColor: colour,
        spanGaps: true,
      },
      extra || {}
    );
  }

  function draw(id, type, datasets, options) {
    var canvas = document.getElementById(id);
    datasets = datasets.filter(Boolean);
    if (!canvas) {
      return;
    }
    if (datasets.length === 0) {
      // Nothing to draw for this scope (a store has no liability): no empty frame.
      canvas.closest("figure").hidden = true;
      return;
    }
    charts[id] = new Chart(canvas, {
      type: type,
      data: { labels: options.labels || data.periods, datasets: datasets },
      options: Object.assign(
        {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          plugins: { legend: { position: "bottom" } },
        },
        options.chart || {}
      ),
    });
  }

  draw("chart-members", "line", [
    series("active_members", COLOURS[0]),
    series("new_members", COLOURS[1]),
  ], {});
  draw("chart-revenue", "bar", [
    series("revenue_member", COLOURS[0]),
    series("revenue_non_member", COLOURS[1]),
  ], { chart: { scales: { x: { stacked: true }, y: { stacked: true } } } });
  draw("chart-rates", "line", [
    series("retention_rate", COLOURS[2]),
    series("repurchase_rate", COLOURS[3]),
  ], { chart: { scales: { y: { min: 0, max: 100 } } } });
  draw("chart-liability", "line", [
    series("liability_amount", COLOURS[4], { fill: false }),
  ], {});

  // The spend multiple against the survey bands: the 2-3x band as a filled area between two
  // flat lines, 4x as a dashed line.
  var periods = data.periods.length;
  function flat(value) {
    var line = [];
    for (var i = 0; i < periods; i += 1) {
      line.push(Number(value));
    }
    return line;
  }
  var spend = series("spend_multiple", COLOURS[0], { borderWidth: 3 });
  draw("chart-spend", "line", [
    spend,
    spend && {
      label: data.bands.label_low,
      data: flat(data.bands.low),
      borderColor: "rgba(20, 108, 46, 0.6)",
      backgroundColor: "rgba(20, 108, 46, 0.15)",
      pointRadius: 0,
      borderWidth: 1,
      fill: false,
    },
    spend && {
      label: data.bands.label_low,
      data: flat(data.bands.high),
      borderColor: "rgba(20, 108, 46, 0.6)",
      backgroundColor: "rgba(20, 108, 46, 0.15)",
      pointRadius: 0,
      borderWidth: 1,
      fill: "-1",
    },
    spend && {
      label: data.bands.label_top,
      data: flat(data.bands.top),
      borderColor: "#7c3aed",
      borderDash: [6, 4],
      pointRadius: 0,
      borderWidth: 2,
      fill: false,
    },
  ], {
    chart: {
      scales: { y: { min: 0 } },
      plugins: {
        legend: {
          position: "bottom",
          // The band is drawn with two lines: list it once.
          labels: {
            filter: function (item, chartData) {
              return item.datasetIndex !== 2;
            },
          },
        },
      },
    },
  });

  if (data.tiers) {
    draw("chart-tiers", "bar", [{
      label: data.text.tier_members,
      data: numbers(data.tiers.values),
      backgroundColor: COLOURS[0],
    }], { labels: data.tiers.labels, chart: { plugins: { legend: { display: false } } } });
  }
  if (data.expiry) {
    draw("chart-expiry", "bar", [
      { label: data.text.points, data: numbers(data.expiry.points), backgroundColor: COLOURS[0] },
      { label: data.text.breakage, data: numbers(data.expiry.breakage), backgroundColor: COLOURS[1] },
    ], {
      labels: data.expiry.labels,
      chart: { scales: { x: { stacked: true }, y: { stacked: true } } },
    });
  }
})();
