/* Follows a KPI recompute: polls the progress endpoint every second and moves the bar until
   every run has finished. The texts come from the page (json_script #recompute-text). */
(function () {
  "use strict";
  var box = document.getElementById("recompute-progress");
  if (!box) {
    return;
  }
  var text = JSON.parse(document.getElementById("recompute-text").textContent);
  var bar = document.getElementById("recompute-bar");
  var percent = document.getElementById("recompute-percent");
  var status = document.getElementById("recompute-status");
  var runs = document.getElementById("recompute-runs");

  function cell(row, value) {
    var td = document.createElement("td");
    td.textContent = value;
    row.appendChild(td);
  }

  function show(progress) {
    bar.value = progress.percent;
    bar.textContent = progress.percent + " %";
    percent.textContent = progress.percent + " %";
    runs.replaceChildren();
    progress.runs.forEach(function (run) {
      var row = document.createElement("tr");
      cell(row, run.program);
      cell(row, run.kinds);
      cell(row, run.status_label);
      cell(row, run.done + " / " + run.total);
      runs.appendChild(row);
    });
    if (progress.failed) {
      status.textContent = text.failed;
    } else if (progress.finished) {
      status.textContent = text.finished;
    } else {
      status.textContent = text.running;
    }
    return progress.finished;
  }

  function poll() {
    fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error(response.status);
        }
        return response.json();
      })
      .then(function (progress) {
        if (!show(progress)) {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () {
        window.setTimeout(poll, 3000);
      });
  }
  poll();
})();
